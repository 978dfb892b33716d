-- @include ready_member
-- @include pi_member
-- @include is_pi_exclusive
-- @include scheduled_member
-- Removes a job from every index (the inverse of place_job, plus the lock index).
local function unplace_job(id, j)
  local m = ready_member(id, j)
  redis.call('ZREM', K.ready, m)
  redis.call('ZREM', K.scheduled, scheduled_member(id, j))
  redis.call('ZREM', K.future, m)
  redis.call('ZREM', K.suspended, m)
  redis.call('ZREM', K.incidents, id)
  redis.call('ZREM', K.locked, id)
  if is_pi_exclusive(j) then
    local pm = pi_member(id, j)
    redis.call('ZREM', K.pijobs, pm)
    redis.call('ZREM', K.parked, pm)
  end
end
