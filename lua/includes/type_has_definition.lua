-- Whether job type `t` has a job definition (deployed, suspended, or an overriding
-- priority): such a type stays known even while it has no jobs.
local function type_has_definition(t)
  return redis.call('HEXISTS', K.definitions, t) == 1
    or redis.call('SISMEMBER', K.suspended_types, t) == 1
    or redis.call('HEXISTS', K.overrides, t) == 1
end
