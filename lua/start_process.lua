--[[ start_process: creates a process instance with its variables.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] priority key ('' = none); [2] msgpack variables
Reply: the process instance id
]]
-- @include keys
-- @include num

local pi = 'p' .. num(redis.call('INCR', K.seq))
redis.call('HSET', K.pis, pi, '0|' .. ARGV[1])
redis.call('HSET', K.vars, pi, ARGV[2])
return pi
