-- The job types acquisition may take: the worker's filter (or every known type) minus
-- the suspended job definitions.
local function active_types(filter)
  local types = {}
  if #filter == 0 then
    types = redis.call('SDIFF', K.types, K.suspended_types)
  else
    for _, t in ipairs(filter) do
      if redis.call('SISMEMBER', K.suspended_types, t) == 0 then types[#types + 1] = t end
    end
  end
  return types
end
