--[[ optimistic_lock: step two of the optimistic acquisition mode: lock each candidate
only if it is still acquirable at the revision step one read. Each job lost to another
worker in between is a locking failure. Every job is a batch of its own.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] owner; [2] lock_ms; then pairs: job id, revision read
Reply: {now, failed to lock, {id, record, payload or nil}, ...one per job locked}
]]
-- @include keys
-- @include now_ms
-- @include decode_job
-- @include encode_job
-- @include lock_job
-- @include ready_member
-- @include pi_member
-- @include is_pi_exclusive
-- @include arg_int
-- @include arg_pairs

local owner = ARGV[1]
local lock_ms = arg_int(2, 1, 86400000)
arg_pairs(3)
local now = now_ms()
local expires = now + lock_ms
local failed = 0
local reply = {now, 0}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local j = decode_job(redis.call('HGET', K.jobs, id))
  local ok = j and j.v == tonumber(ARGV[i + 1]) and j.o == '' and j.r > 0 and j.s ~= '1'
    and j.d <= now
  if ok and is_pi_exclusive(j) and redis.call('HEXISTS', K.pilocks, j.pi) == 1 then ok = false end
  if ok and redis.call('ZREM', K.ready, ready_member(id, j)) == 0 then ok = false end
  if ok then
    if is_pi_exclusive(j) then redis.call('ZREM', K.pijobs, pi_member(id, j)) end
    lock_job(id, j, owner, expires)
    reply[#reply + 1] = {id, encode_job(j), redis.call('HGET', K.payloads, id)}
  else
    failed = failed + 1
  end
end
reply[2] = failed
return reply
