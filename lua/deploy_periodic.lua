--[[ deploy_periodic: writes an app's periodic schedules and removes those the same app
deployed before and no longer declares, all or nothing (rexec/periodic.py).
An unchanged schedule (same fingerprint) keeps its next tick; a new or changed one is
due at the first tick the caller computed. Record (periodic): "fingerprint|cron|
timezone|catch_up|grace ms|app|host|deployed ms|type|priority|retries|exclusive|payload".
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] app; ARGV[2] host; ARGV[3] number of schedules n; then 12 fields each: name,
fingerprint, cron, timezone, catch_up '1'/'0', grace ms, type, priority ('' or
'[d]<pk>'), retries ('', '<n>', 'd<n>'), exclusive ('', '1'/'0', 'd1'/'d0'), msgpack
payload ('' = none), first tick ms
Reply: {statuses, removed}: a status per schedule (0 new, 1 unchanged, 2 changed), and
the names of the schedules removed
]]
-- @include keys
-- @include arg_int
-- @include now_ms
-- @include num

local n = arg_int(3, 0, 100000)
if #ARGV ~= 3 + 12 * n then
  return redis.error_reply('REXEC:BAD_ARGUMENT expected 12 fields per schedule')
end
for k = 1, 2 do
  if string.find(ARGV[k], '|', 1, true) then return redis.error_reply('REXEC:BAD_ARGUMENT ' .. ARGV[k]) end
end
for i = 0, n - 1 do
  local b = 4 + i * 12
  if not string.match(ARGV[b], '^[A-Za-z0-9_.:%-]+$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT schedule name ' .. ARGV[b])
  end
  for k = 1, 9 do
    if string.find(ARGV[b + k], '|', 1, true) then
      return redis.error_reply('REXEC:BAD_ARGUMENT ' .. ARGV[b + k])
    end
  end
  if not string.match(ARGV[b + 11], '^%d+$') or not string.match(ARGV[b + 5], '^%d+$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT schedule ' .. ARGV[b])
  end
end
local now = num(now_ms())
local app, host = ARGV[1], ARGV[2]
local statuses, wanted = {}, {}
for i = 0, n - 1 do
  local b = 4 + i * 12
  local name, fp = ARGV[b], ARGV[b + 1]
  wanted[name] = true
  local old = redis.call('HGET', K.periodic, name)
  local status = 0
  if old then
    status = (string.match(old, '^([^|]*)|') == fp) and 1 or 2
  end
  redis.call('HSET', K.periodic, name, table.concat({fp, ARGV[b + 2], ARGV[b + 3], ARGV[b + 4],
    ARGV[b + 5], app, host, now, ARGV[b + 6], ARGV[b + 7], ARGV[b + 8], ARGV[b + 9],
    ARGV[b + 10]}, '|'))
  if status == 1 then
    -- keeps its tick; a lost one is restored
    if not redis.call('ZSCORE', K.periodic_due, name) then
      redis.call('ZADD', K.periodic_due, ARGV[b + 11], name)
    end
  else
    redis.call('ZADD', K.periodic_due, ARGV[b + 11], name)
  end
  statuses[#statuses + 1] = status
end
local removed = {}
local all = redis.call('HGETALL', K.periodic)
for i = 1, #all, 2 do
  local name = all[i]
  if not wanted[name] and string.match(all[i + 1], '^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|') == app then
    removed[#removed + 1] = name
  end
end
for _, name in ipairs(removed) do
  redis.call('HDEL', K.periodic, name)
  redis.call('ZREM', K.periodic_due, name)
  redis.call('HDEL', K.periodic_last, name)
end
return {statuses, removed}
