--[[ start_process: creates a process instance with its variables.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] priority key ('' = none); [2] msgpack variables
Reply: the process instance id
]]
-- @include keys
-- @include num

if ARGV[1] ~= '' and not string.match(ARGV[1], '^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$') then
  return redis.error_reply('REXEC:BAD_ARGUMENT priority key ' .. ARGV[1])
end
if ARGV[2] == nil then return redis.error_reply('REXEC:BAD_ARGUMENT start_process needs its variables') end
local pi = 'p' .. num(redis.call('INCR', K.seq))
redis.call('HSET', K.pis, pi, '0|' .. ARGV[1])
redis.call('HSET', K.vars, pi, ARGV[2])
return pi
