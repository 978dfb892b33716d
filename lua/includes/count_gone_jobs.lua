-- @include type_has_definition
-- `k` jobs of type `t` are gone (completed or deleted). When a counted type has no job
-- left and no job definition, it leaves `types`, so acquisition cost does not grow with
-- the types that once existed.
local function count_gone_jobs(t, k)
  if redis.call('HEXISTS', K.type_jobs, t) == 0 then return end
  local left = redis.call('HINCRBY', K.type_jobs, t, -k)
  if left > 0 then return end
  if type_has_definition(t) then
    if left < 0 then redis.call('HSET', K.type_jobs, t, 0) end
    return
  end
  redis.call('HDEL', K.type_jobs, t)
  redis.call('SREM', K.types, t)
end
