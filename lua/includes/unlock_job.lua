-- @include encode_job
-- @include place_job
-- @include release_pi
-- @include is_pi_exclusive
-- Takes the lock off a locked job and files it where its state says. Returns the
-- state it was placed in, and whether that made work ready (the job itself, or the
-- parked jobs of its instance, now released).
local function unlock_job(id, j, now)
  j.o = ''
  j.e = ''
  redis.call('ZREM', K.locked, id)
  redis.call('HSET', K.jobs, id, encode_job(j))
  local state = place_job(id, j, now)
  local freed = is_pi_exclusive(j) and release_pi(j.pi)
  return state, state == 'ready' or freed
end
