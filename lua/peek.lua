--[[ peek: the head of one partition's acquisition order, read only. A worker of a
partitioned namespace (rexec/partitions.py) peeks at every partition in one pipelined
round trip, merges the heads and then acquires from each partition only what belongs to
the best n overall. Nothing is promoted, reclaimed, parked or locked here.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] n, the most candidates to return; [2] lowest priority key allowed ('' = none);
[3] highest priority key allowed ('' = none); [4..] job types (none = all active types)
Reply: {now, next due ms or -1, expired, key, key, ...}: expired is 1 when a lock has
expired (acquire must be called to reclaim it, even with nothing to take), else 0; then
the sort keys ("<priority key><due hex><id length letter><id>") of the best acquirable
candidates, in acquisition order. An exclusive job whose process instance is locked is
left out (acquire would park it).
]]
-- @include keys
-- @include arg_int
-- @include now_ms
-- @include active_types
-- @include next_candidates

local n, lo, hi = arg_int(1, 0, 1000000), ARGV[2], ARGV[3]
local filter = {}
for i = 4, #ARGV do filter[#filter + 1] = ARGV[i] end
local now = now_ms()
local reply = {now, -1, 0}
local next_due = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
if next_due[2] then reply[2] = tonumber(next_due[2]) end
if #redis.call('ZRANGEBYSCORE', K.locked, '-inf', '(' .. now, 'LIMIT', 0, 1) > 0 then
  reply[3] = 1
end
if n == 0 then return reply end
local cands = next_candidates(active_types(filter), lo, hi, n, now, 32)
local locked_pi = {}
for _, c in ipairs(cands) do
  if c.pi ~= '' and locked_pi[c.pi] == nil then
    locked_pi[c.pi] = redis.call('HEXISTS', K.pilocks, c.pi) == 1
  end
  if c.pi == '' or not locked_pi[c.pi] then reply[#reply + 1] = c.key end
end
return reply
