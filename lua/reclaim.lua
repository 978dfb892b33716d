--[[ reclaim: unlocks jobs whose lock expired (crashed or stalled workers), as every
acquisition does first; for workers too busy to acquire, so that recovery does not
wait for someone's next acquisition.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] the most locks to reclaim
Reply: the number of locks reclaimed
]]
-- @include keys
-- @include now_ms
-- @include reclaim_expired
-- @include arg_int

local reclaimed = reclaim_expired(now_ms(), arg_int(2, 1, 10000000))
if reclaimed > 0 then redis.call('PUBLISH', ARGV[1], '1') end
return reclaimed
