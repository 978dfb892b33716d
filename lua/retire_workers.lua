--[[ retire_workers: forgets worker processes: those whose heartbeat stopped (crashed,
killed or long gone) and those named (a worker that stopped cleanly retires itself).
Their counters are added into the cluster's retired totals so that the sums stay exact,
and their announcement, heartbeat and per-worker fields are removed.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] heartbeats older than this (server ms) are stale ('' = retire only those named);
[2..] ids of workers to retire whatever their heartbeat
Reply: the number of workers retired (named ones that left no trace are not counted)
]]
-- @include keys
-- @include arg_int
-- @include num
-- @include call_chunked

-- Everything is read and summed before the first write.
if ARGV[1] ~= '' then arg_int(1, -9007199254740991, 9007199254740991) end
local gone, ids = {}, {}
local function retire(id)
  if not gone[id] then
    gone[id] = true
    ids[#ids + 1] = id
  end
end
if ARGV[1] ~= '' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.heartbeats, '-inf', '(' .. ARGV[1])) do
    retire(id)
  end
end
for i = 2, #ARGV do
  local id = ARGV[i]
  if not gone[id] and (redis.call('HEXISTS', K.workers, id) == 1
      or redis.call('ZSCORE', K.heartbeats, id)) then
    retire(id)
  end
end
local fields = redis.call('HGETALL', K.metrics)
local sums, names, drop = {}, {}, {}
local named = {}
for i = 2, #ARGV do named[ARGV[i]] = true end
for i = 1, #fields, 2 do
  local worker, name = string.match(fields[i], '^(.*)|([^|]*)$')
  if worker and worker ~= 'retired' and (gone[worker] or named[worker]) then
    if not gone[worker] then retire(worker) end
    local value = tonumber(fields[i + 1])
    if value then
      if not sums[name] then names[#names + 1] = name end
      sums[name] = (sums[name] or 0) + value
    end
    drop[#drop + 1] = fields[i]
  end
end
if #ids == 0 then return 0 end

for _, name in ipairs(names) do
  redis.call('HINCRBY', K.metrics, 'retired|' .. name, num(sums[name]))
end
call_chunked('HDEL', K.metrics, drop)
call_chunked('HDEL', K.workers, ids)
call_chunked('ZREM', K.heartbeats, ids)
return #ids
