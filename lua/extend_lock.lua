--[[ extend_lock: the heartbeat of running jobs; pushes their lock expiry out.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] owner; [2] lock_ms; then pairs: job id, revision
Reply: {new expiry ms, status per job (0 extended, 1 no such job, 2 lock lost)...}
]]
-- @include keys
-- @include arg_int
-- @include now_ms
-- @include check_owner
-- @include encode_job
-- @include arg_pairs

arg_pairs(3)
local expires = now_ms() + arg_int(2, 1, 86400000)
local reply = {expires}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local j, status = check_owner(id, ARGV[1], ARGV[i + 1])
  if j then
    j.e = num(expires)
    redis.call('HSET', K.jobs, id, encode_job(j))
    redis.call('ZADD', K.locked, expires, id)
  end
  reply[#reply + 1] = status
end
return reply
