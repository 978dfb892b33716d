-- @include encode_job
-- @include is_pi_exclusive
-- Locks a job (already taken out of its queue) for `owner` until `expires`, bumps its
-- revision and counts it against its process instance's exclusive lock.
local function lock_job(id, j, owner, expires)
  j.o = owner
  j.e = num(expires)
  j.v = j.v + 1
  redis.call('HSET', K.jobs, id, encode_job(j))
  redis.call('ZADD', K.locked, expires, id)
  if is_pi_exclusive(j) then redis.call('HINCRBY', K.pilocks, j.pi, 1) end
end
