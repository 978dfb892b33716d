--[[ check_joins: counts the branches still to arrive at joins for the invariant checker,
in one atomic call, and on request makes each join's count say that number; a join that
no branch is left to arrive at creates its join job then, as its last arrival would have.
A join without readable job fields is left alone. Reads the whole branches hash: it runs
only for joins the checker's scan found suspect.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] '1' to repair, '0' to only count; [3..] join ids
Reply: per join 5 fields: its count ('<j>|n') and its job fields ('<j>|f') as they were,
or nil; the branches naming it; the id of the join job created, or nil; 1 if its payload
field ('<j>|pl') exists, else 0 (a join with none of its fields is gone: it fired)
]]
-- @include keys
-- @include now_ms
-- @include num
-- @include create_job
-- @include arg_flag

arg_flag(2)
local JOIN_FIELDS = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$'

local counted = {}
local branches = redis.call('HGETALL', K.branches)
for i = 2, #branches, 2 do
  counted[branches[i]] = (counted[branches[i]] or 0) + 1
end

local now = now_ms()
local woke = false
local reply = {}
for i = 3, #ARGV do
  local jid = ARGV[i]
  local f = redis.call('HMGET', K.joins, jid .. '|n', jid .. '|f', jid .. '|pl')
  local n = counted[jid] or 0
  local created = false
  local t, pk, due, r, x, pi
  if f[2] then t, pk, due, r, x, pi = string.match(f[2], JOIN_FIELDS) end
  if ARGV[2] == '1' and t and string.match(r, '^d?%d*$') then
    if n > 0 and f[1] ~= num(n) then
      redis.call('HSET', K.joins, jid .. '|n', n)
    elseif n == 0 then
      redis.call('HDEL', K.joins, jid .. '|n', jid .. '|f', jid .. '|pl')
      local id, j = create_job({t, pk, due, r, x, pi, f[3] or ''}, now)
      if place_job(id, j, now) == 'ready' then woke = true end
      created = id
    end
  end
  reply[#reply + 1] = f[1]
  reply[#reply + 1] = f[2]
  reply[#reply + 1] = n
  reply[#reply + 1] = created
  reply[#reply + 1] = f[3] and 1 or 0
end
if woke then redis.call('PUBLISH', ARGV[1], '1') end
return reply
