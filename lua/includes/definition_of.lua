-- The stored definition of a job type (rexec/definitions.py), parsed: {e = executions,
-- iv = intervals 'ms,ms,...', x = exclusive default, rule = encoded priority rule,
-- keep = ms to keep results (0 = none), ron / nron = ',path,path,' retry_on /
-- no_retry_on class paths ('' = none)}; nil when the type was never deployed.
-- A record has 14 fields (written before results existed) or 17. Memoized per call.
local definition_memo = {}
local function definition_of(jtype)
  local d = definition_memo[jtype]
  if d == nil then
    d = false
    local raw = redis.call('HGET', K.definitions, jtype)
    if raw then
      local f = {}
      for v in string.gmatch(raw .. '|', '([^|]*)|') do f[#f + 1] = v end
      local e = tonumber(f[1])
      if e and (#f == 14 or #f == 17) then
        d = {e = e, iv = f[2], x = f[3], rule = f[6], keep = 0, ron = '', nron = ''}
        if #f == 17 then
          d.keep = tonumber(f[7]) or 0
          if f[8] ~= '' then d.ron = ',' .. f[8] .. ',' end
          if f[9] ~= '' then d.nron = ',' .. f[9] .. ',' end
        end
      end
    end
    definition_memo[jtype] = d
  end
  return d or nil
end
