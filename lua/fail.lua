--[[ fail: records a failed execution of a locked job and unlocks it.
Retries drop by one unless the failure was an optimistic-locking conflict; the job is due
again after the wait of its type's stored retry cycle (or, for a type never deployed,
the wait the caller gives); at 0 retries it becomes an incident.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] owner; [3] job id; [4] revision; [5] error text ('' = keep);
[6] retries to consume (1 or 0); [7] wait before the next execution, ms, when the type
has no stored definition
Reply: {status (0 ok, 1 no such job, 2 lock lost), state the job is now in}
]]
-- @include keys
-- @include wake_message
-- @include now_ms
-- @include check_owner
-- @include unlock_job
-- @include arg_int
-- @include definition_of
-- @include retry_wait

local id = ARGV[3]
local consumed, wait_ms = arg_int(6, 0, 1), arg_int(7, 0, 70368744177664)
local j, status = check_owner(id, ARGV[2], ARGV[4])
if not j then return {status, ''} end
local now = now_ms()
j.r = math.max(0, j.r - consumed)
local def = consumed > 0 and definition_of(j.t)
j.d = now + (def and retry_wait(def, j.r) or wait_ms)
j.v = j.v + 1
if ARGV[5] ~= '' then redis.call('HSET', K.errors, id, ARGV[5]) end
local state, woke = unlock_job(id, j, now)
if state == 'incident' then redis.call('HINCRBY', K.counters, 'incidents', 1) end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
return {0, state}
