--[[ set_variables: replaces a process instance's variables from outside (Camunda's
setVariables), if it is still at the revision they were read at; bumps the revision.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] process instance id; [2] revision as read; [3] new msgpack variables;
[4] plain forms of its scalar variables ('' = none)
Reply: status: 0 written, 4 the revision changed since read, 5 no such instance
]]
-- @include keys
-- @include num

local pi = ARGV[1]
if string.find(ARGV[4], '|', 1, true) then
  return redis.error_reply('REXEC:BAD_ARGUMENT plain forms')
end
local rec = redis.call('HGET', K.pis, pi)
if not rec then return 5 end
local rev, pk = string.match(rec, '^([^|]*)|(.*)$')
if rev ~= ARGV[2] then return 4 end
redis.call('HSET', K.pis, pi, num(tonumber(rev) + 1) .. '|' .. pk)
redis.call('HSET', K.vars, pi, ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', K.pvals, pi, ARGV[4]) else redis.call('HDEL', K.pvals, pi) end
return 0
