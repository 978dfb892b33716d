--[[ optimistic_read: step one of the optimistic acquisition mode (Camunda 7's way,
kept to measure the conflicts it causes): read the best candidates and their revisions
without locking them. Promotion, lock reclaim and parking happen as in acquire.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] n; [2] lowest priority key allowed ('' = none); [3] highest ('' = none);
[4] promote cap; [5] reclaim cap; [6..] job types (none = all active types)
Reply: {now, next due ms or -1, reclaimed, {id, revision, id, revision, ...}}
]]
-- @include keys
-- @include now_ms
-- @include decode_job
-- @include promote_due
-- @include reclaim_expired
-- @include active_types
-- @include next_candidates
-- @include arg_int

local n, lo, hi = arg_int(1, 0, 1000000), ARGV[2], ARGV[3]
local promote_cap, reclaim_cap = arg_int(4, 1, 10000000), arg_int(5, 1, 10000000)
local filter = {}
for i = 6, #ARGV do filter[#filter + 1] = ARGV[i] end
local now = now_ms()
promote_due(now, math.min(promote_cap, 4 * n + 100))
local reclaimed = reclaim_expired(now, reclaim_cap)
local types = active_types(filter)
local found, seen_pi = {}, {}
local rounds = 0
while #found < 2 * n and rounds < 100 do
  rounds = rounds + 1
  local cands = next_candidates(types, lo, hi, n - #found / 2)
  local parked = 0
  for _, c in ipairs(cands) do
    if c.pi ~= '' and redis.call('HEXISTS', K.pilocks, c.pi) == 1 then
      redis.call('ZREM', K.ready, c.m)
      redis.call('ZADD', K.parked, 0, c.pi .. '|' .. c.key .. '|' .. c.t)
      parked = parked + 1
    elseif c.pi ~= '' and seen_pi[c.pi] then
      -- one exclusive job per instance: its siblings would only collide with it
    else
      if c.pi ~= '' then seen_pi[c.pi] = true end
      local j = decode_job(redis.call('HGET', K.jobs, c.id))
      if j then
        found[#found + 1] = c.id
        found[#found + 1] = j.v
      else
        redis.call('ZREM', K.ready, c.m)
        parked = parked + 1
      end
    end
  end
  if parked == 0 then break end
end
local next_due = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
return {now, next_due[2] and tonumber(next_due[2]) or -1, reclaimed, found}
