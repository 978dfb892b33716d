--[[ retire_workers: forgets worker processes whose heartbeat stopped (crashed, killed or
long gone): their counters are added into the cluster's retired totals so that the sums
stay exact, and their announcement, heartbeat and per-worker fields are removed.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] heartbeats older than this (server ms) are stale
Reply: the number of workers retired
]]
-- @include keys

local stale = redis.call('ZRANGEBYSCORE', K.heartbeats, '-inf', '(' .. ARGV[1])
if #stale == 0 then return 0 end
local gone = {}
for _, id in ipairs(stale) do gone[id] = true end
local fields = redis.call('HGETALL', K.metrics)
local drop = {}
for i = 1, #fields, 2 do
  local worker, name = string.match(fields[i], '^(.*)|([^|]*)$')
  if worker and gone[worker] then
    redis.call('HINCRBY', K.metrics, 'retired|' .. name, fields[i + 1])
    drop[#drop + 1] = fields[i]
  end
end
for i = 1, #drop, 1000 do
  redis.call('HDEL', K.metrics, unpack(drop, i, math.min(i + 999, #drop)))
end
redis.call('HDEL', K.workers, unpack(stale))
redis.call('ZREM', K.heartbeats, unpack(stale))
return #stale
