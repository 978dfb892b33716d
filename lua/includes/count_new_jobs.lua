-- `k` jobs of type `t` were created: the type is known (acquisition looks at it) and,
-- when it became known here, its jobs are counted in type_jobs so that it can leave
-- `types` again when its last job goes (count_gone_jobs). A type known without a count
-- (from before counting, or re-added by a repair) is simply never dropped.
local function count_new_jobs(t, k)
  if redis.call('SADD', K.types, t) == 1 then
    redis.call('HSET', K.type_jobs, t, k)
  elseif redis.call('HEXISTS', K.type_jobs, t) == 1 then
    redis.call('HINCRBY', K.type_jobs, t, k)
  end
end
