-- The priority key a stored rule (rexec/rules.py) gives a job of process instance `pi`
-- ('' = none) now: 'c<pk>' a constant; 'v:<name>:<default>;<form>=<pk>...' reads the
-- instance's variable from its plain forms (pvals). nil for no rule (or 'py').
local function rule_pk(rule, pi)
  local c = string.match(rule, '^c(%x+)$')
  if c then return c end
  local name, default = string.match(rule, '^v:(%x+):(%x+)')
  if not name then return nil end
  local pv = pi ~= '' and redis.call('HGET', K.pvals, pi)
  if not pv then return default end
  local f = string.match(pv, ',' .. name .. '=([^,]*),')
  if not f then return default end
  local ipk = string.match(f, '^i(%x+)$')
  if ipk then return ipk end
  return string.match(rule, ';' .. f .. '=(%x+)') or default
end
