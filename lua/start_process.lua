--[[ start_process: creates a process instance with its variables.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] process-level priority: '' none, a priority key, or a declarative rule
('v:...', rexec/rules.py) re-evaluated at each job creation; [2] msgpack variables;
[3] plain forms of its scalar variables ('' = none; what rules read)
Reply: the process instance id
]]
-- @include keys
-- @include num

local own = ARGV[1]
if string.find(own, '|', 1, true) or string.find(ARGV[3] or '', '|', 1, true)
  or not (own == '' or string.match(own, '^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$')
          or string.match(own, '^v:%x+:%x+')) then
  return redis.error_reply('REXEC:BAD_ARGUMENT priority key, rule or plain forms ' .. own)
end
if ARGV[2] == nil then return redis.error_reply('REXEC:BAD_ARGUMENT start_process needs its variables') end
local pi = 'p' .. num(redis.call('INCR', K.seq))
redis.call('HSET', K.pis, pi, '0|' .. ARGV[1])
redis.call('HSET', K.vars, pi, ARGV[2])
if ARGV[3] and ARGV[3] ~= '' then redis.call('HSET', K.pvals, pi, ARGV[3]) end
return pi
