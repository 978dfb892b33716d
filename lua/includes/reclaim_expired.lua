-- @include decode_job
-- @include unlock_job
-- Unlocks up to `cap` jobs whose lock expired before `now` (a crashed or stalled
-- worker): they become acquirable again, and their old owner's commit will fail.
local function reclaim_expired(now, cap)
  local expired = redis.call('ZRANGEBYSCORE', K.locked, '-inf', '(' .. now, 'LIMIT', 0, cap)
  for _, id in ipairs(expired) do
    local j = decode_job(redis.call('HGET', K.jobs, id))
    if j and j.o ~= '' then
      unlock_job(id, j, now)
    else
      redis.call('ZREM', K.locked, id)
    end
  end
  if #expired > 0 then redis.call('HINCRBY', K.counters, 'lock-expired', #expired) end
  return #expired
end
