-- The stored definition of a job type (rexec/definitions.py), parsed: {e = executions,
-- iv = intervals 'ms,ms,...', x = exclusive default, rule = encoded priority rule}; nil
-- when the type was never deployed. Memoized per call.
local definition_memo = {}
local function definition_of(jtype)
  local d = definition_memo[jtype]
  if d == nil then
    d = false
    local raw = redis.call('HGET', K.definitions, jtype)
    if raw then
      local e, iv, x, rule = string.match(raw, '^(%d+)|([%d,]+)|([01])|%d*|%d*|([^|]*)|')
      if e then d = {e = tonumber(e), iv = iv, x = x, rule = rule} end
    end
    definition_memo[jtype] = d
  end
  return d or nil
end
