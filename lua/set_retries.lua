--[[ set_retries: sets the retries left of jobs; on an incident (0 retries) this
resolves it and the job becomes acquirable again (taking its unique key back if no other
job holds it meanwhile); 0 makes an incident (which frees its key).
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] retries; [3..] job ids
Reply: one status per job: 0 done, 1 no such job
]]
-- @include keys
-- @include wake_message
-- @include arg_int
-- @include now_ms
-- @include decode_job
-- @include encode_job
-- @include place_job
-- @include unplace_job
-- @include hold_key

local retries = arg_int(2, 0, 1000000)
local now = now_ms()
local statuses = {}
local woke = false
for i = 3, #ARGV do
  local id = ARGV[i]
  local j = decode_job(redis.call('HGET', K.jobs, id))
  if not j then
    statuses[#statuses + 1] = 1
  else
    if j.o == '' then unplace_job(id, j) end
    j.r = retries
    redis.call('HSET', K.jobs, id, encode_job(j))
    hold_key(id, j)
    if j.o == '' and place_job(id, j, now) == 'ready' then woke = true end
    statuses[#statuses + 1] = 0
  end
end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
return statuses
