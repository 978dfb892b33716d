--[[ complete: commits finished jobs, each only if still locked by this owner at the
revision it was acquired with. Each job's commit is independent of the others'.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] owner; then pairs: job id, revision
Reply: one status per job: 0 committed, 1 no such job, 2 lock lost
]]
-- @include keys
-- @include check_owner
-- @include release_pi
-- @include is_pi_exclusive

local owner = ARGV[2]
local statuses = {}
local woke = false
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local j, status = check_owner(id, owner, ARGV[i + 1])
  if j then
    redis.call('HDEL', K.jobs, id)
    redis.call('HDEL', K.payloads, id)
    redis.call('HDEL', K.errors, id)
    redis.call('ZREM', K.locked, id)
    if is_pi_exclusive(j) and release_pi(j.pi) then woke = true end
  end
  statuses[#statuses + 1] = status
end
if woke then redis.call('PUBLISH', ARGV[1], '1') end
return statuses
