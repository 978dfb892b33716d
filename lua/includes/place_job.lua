-- @include ready_member
-- @include pi_member
-- @include is_pi_exclusive
-- @include scheduled_member
-- @include wake_note
-- Puts an unlocked job into the index its state calls for; returns that state.
-- Exclusive jobs of a locked process instance go to pijobs and parked (parked), not to
-- ready.
local function place_job(id, j, now)
  if j.r <= 0 then
    redis.call('ZADD', K.incidents, now, id)
    return 'incident'
  end
  local m = ready_member(id, j)
  if j.s == '1' then
    redis.call('ZADD', K.suspended, 0, m)
    return 'suspended'
  end
  if j.d > now then
    redis.call('ZADD', K.scheduled, j.d, scheduled_member(id, j))
    redis.call('ZADD', K.future, 0, m)
    return 'scheduled'
  end
  if is_pi_exclusive(j) then
    local pm = pi_member(id, j)
    redis.call('ZADD', K.pijobs, 0, pm)
    if redis.call('HEXISTS', K.pilocks, j.pi) == 1 then
      redis.call('ZADD', K.parked, 0, pm)
      return 'parked'
    end
  end
  redis.call('ZADD', K.ready, 0, m)
  wake_note(j.t, j.p)
  return 'ready'
end
