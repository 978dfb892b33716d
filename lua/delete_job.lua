--[[ delete_job: removes jobs in any state. A running job's worker will find its lock
gone and its commit refused. A deleted branch of a fork counts as arrived at its join,
so the join is not held up for ever.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2..] job ids
Each deleted job is recorded in the history when the history is on (its stream exists).
A job whose type keeps results leaves its result behind: "failed" for an incident (it
gave up with an error), else "deleted".
Reply: one status per job: 0 deleted, 1 no such job
]]
-- @include keys
-- @include wake_message
-- @include decode_job
-- @include unplace_job
-- @include release_pi
-- @include is_pi_exclusive
-- @include now_ms
-- @include arrive_at_join
-- @include count_gone_jobs
-- @include forget_job
-- @include record_history
-- @include finish_trail
-- @include trim_results

local statuses = {}
local woke = false
local history_on = redis.call('EXISTS', K.history) == 1
local now, kept = now_ms(), false
for i = 2, #ARGV do
  local id = ARGV[i]
  local j = decode_job(redis.call('HGET', K.jobs, id))
  if not j then
    statuses[#statuses + 1] = 1
  else
    unplace_job(id, j)
    if j.o ~= '' and is_pi_exclusive(j) and release_pi(j.pi) then woke = true end
    redis.call('HDEL', K.jobs, id)
    forget_job(id, j, 'deleted')
    local final = (j.o == '' and j.r <= 0) and 'failed' or 'deleted'
    kept = finish_trail(id, j, now, final, '') or kept
    if history_on then record_history(id, j, 'deleted', -1) end
    redis.call('HDEL', K.payloads, id)
    redis.call('HDEL', K.errors, id)
    if arrive_at_join(id, now_ms()) == 'ready' then woke = true end
    count_gone_jobs(j.t, 1)
    statuses[#statuses + 1] = 0
  end
end
if kept then trim_results(now) end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
return statuses
