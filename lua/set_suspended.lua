--[[ set_suspended: suspends ('1') or activates ('0') jobs. A suspended job is never
acquired; activating files it back under its original sort key, so it regains its place.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] '1' or '0'; [3] only jobs of this type ('' = any); [4..] ids
Reply: one status per job: 0 changed, 1 no such job (or not of that type), 3 already so
]]
-- @include keys
-- @include wake_message
-- @include now_ms
-- @include decode_job
-- @include encode_job
-- @include place_job
-- @include unplace_job

local flag, only_type = ARGV[2], ARGV[3]
if flag ~= '0' and flag ~= '1' then return redis.error_reply('REXEC:BAD_ARGUMENT flag ' .. flag) end
local now = now_ms()
local statuses = {}
local woke = false
for i = 4, #ARGV do
  local id = ARGV[i]
  local j = decode_job(redis.call('HGET', K.jobs, id))
  if not j or (only_type ~= '' and j.t ~= only_type) then
    statuses[#statuses + 1] = 1
  else
    if j.s ~= flag then
      if j.o == '' then unplace_job(id, j) end
      j.s = flag
      redis.call('HSET', K.jobs, id, encode_job(j))
      if j.o == '' and place_job(id, j, now) == 'ready' then woke = true end
      statuses[#statuses + 1] = 0
    else
      statuses[#statuses + 1] = 3
    end
  end
end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
return statuses
