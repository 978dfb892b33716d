--[[ unlock: gives locked jobs back unchanged (not started, or shutting down).
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] owner; then pairs: job id, revision
Reply: one status per job: 0 unlocked, 1 no such job, 2 lock lost
]]
-- @include keys
-- @include wake_message
-- @include now_ms
-- @include check_owner
-- @include unlock_job
-- @include arg_pairs

arg_pairs(3)
local now = now_ms()
local statuses = {}
local woke = false
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local j, status = check_owner(id, ARGV[2], ARGV[i + 1])
  if j then
    local _, freed = unlock_job(id, j, now)
    woke = woke or freed
  end
  statuses[#statuses + 1] = status
end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
return statuses
