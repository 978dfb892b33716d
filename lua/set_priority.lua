--[[ set_priority: gives jobs a new priority and re-sorts them at once. A locked job
keeps its lock and is filed under the new priority when it is unlocked.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] priority key; [2] only jobs of this type ('' = any); [3..] job ids
Reply: one status per job: 0 changed, 1 no such job (or not of that type)
]]
-- @include keys
-- @include now_ms
-- @include decode_job
-- @include encode_job
-- @include place_job
-- @include unplace_job

local pk, only_type = ARGV[1], ARGV[2]
if not string.match(pk, '^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$') then
  return redis.error_reply('REXEC:BAD_ARGUMENT priority key ' .. pk)
end
local now = now_ms()
local statuses = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local j = decode_job(redis.call('HGET', K.jobs, id))
  if not j or (only_type ~= '' and j.t ~= only_type) then
    statuses[#statuses + 1] = 1
  else
    if j.o == '' then unplace_job(id, j) end
    j.p = pk
    redis.call('HSET', K.jobs, id, encode_job(j))
    if j.o == '' then place_job(id, j, now) end
    statuses[#statuses + 1] = 0
  end
end
return statuses
