--[[ deploy: writes an app's job definitions, one record per type, all or nothing.
The last deploy wins; a record keeps the deployment it replaced when that one had
another definition (fingerprint), so a conflict between two apps stays visible.
Record: "executions|intervals ms,..|exclusive|lock ms|timeout ms|rule|keep result ms|
retry_on|no_retry_on|fingerprint|deployed ms|host|app|replaced fingerprint|replaced ms|
replaced host|replaced app" (rexec/definitions.py); a head of the first six fields only
(as older versions send) is stored as such. Overriding priority and suspension are operator state and are
kept apart (overrides, suspended_types): a deploy never resets them.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] number of types n; then 5 fields each: type, definition
"executions|intervals|exclusive|lock ms|timeout ms|rule[|keep ms|retry_on|no_retry_on]",
fingerprint, host, app
Reply: one status per type: 0 new, 1 unchanged, 2 changed, 3 replaced another app's
different definition (a conflict)
]]
-- @include keys
-- @include arg_int
-- @include now_ms
-- @include num

local n = arg_int(1, 1, 100000)
if #ARGV ~= 1 + 5 * n then return redis.error_reply('REXEC:BAD_ARGUMENT expected 5 fields per type') end
for i = 0, n - 1 do
  local b = 2 + i * 5
  if not string.match(ARGV[b], '^[A-Za-z0-9_.:%-]+$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT job type ' .. ARGV[b])
  end
  if not string.match(ARGV[b + 1], '^%d+|[%d,]+|[01]|%d*|%d*|[^|]*$')
      and not string.match(ARGV[b + 1], '^%d+|[%d,]+|[01]|%d*|%d*|[^|]*|%d*|[%w_.,<>]*|[%w_.,<>]*$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT definition ' .. ARGV[b + 1])
  end
  for k = 2, 4 do
    if string.find(ARGV[b + k], '|', 1, true) then
      return redis.error_reply('REXEC:BAD_ARGUMENT ' .. ARGV[b + k])
    end
  end
end
local now = num(now_ms())
local statuses = {}
for i = 0, n - 1 do
  local b = 2 + i * 5
  local jtype, head, fp, host, app = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local old = redis.call('HGET', K.definitions, jtype)
  local replaced = '|||'
  local status = 0
  if old then
    local f = {}
    for v in string.gmatch(old .. '|', '([^|]*)|') do f[#f + 1] = v end
    local h = #f - 8  -- the head's fields (6 or 9), then fingerprint, deployment, replaced
    local ofp, oms, ohost, oapp = f[h + 1], f[h + 2], f[h + 3], f[h + 4]
    local rest = table.concat({f[h + 5] or '', f[h + 6] or '', f[h + 7] or '', f[h + 8] or ''}, '|')
    if ofp == fp then
      status = 1
      replaced = rest or '|||'
    else
      replaced = table.concat({ofp or '', oms or '', ohost or '', oapp or ''}, '|')
      status = (oapp == app) and 2 or 3
    end
  end
  redis.call('HSET', K.definitions, jtype, table.concat({head, fp, now, host, app, replaced}, '|'))
  statuses[#statuses + 1] = status
end
return statuses
