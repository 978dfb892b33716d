--[[ commit: completes a job together with what its handler asked for, all or nothing:
process-variable changes (checked against the instance revision the handler read),
follow-up jobs, forks with their join, and the branch's arrival at its own join.
Exclusive follow-ups of the job's own process instance can be locked at once for the
same owner, to run next in the same slot without a trip through acquisition.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] owner; [3] job id; [4] revision; [5] lock_ms;
[6] history length cap (0 = no history); [7] history TTL ms (0 = none);
[8] process instance whose variables change ('' = none); [9] its revision as read;
[10] its new msgpack variables;
[11] number of joins J, then 8 fields each: branches to wait for, and the join job's
    creation fields (type, priority key, due, retries, exclusive, pi, payload);
then the number of new jobs M, then 9 fields each: the creation fields, the join it is a
    branch of (1..J, or 0), and '1' to lock it at once for the owner;
then '1' to end the job's process instance (its record and variables go), else '0';
then (optional) the plain forms of the new variables (rexec/rules.py), the handler's
return value as msgpack ('' = none) and when the execution started (ms, '' = unknown):
a job whose type keeps results leaves its result behind (finish_trail)
New jobs resolve their priority, retries and exclusivity against the store with the
variables as this commit leaves them (resolve_new).
Reply: {status, {id, record, payload or nil, ...}} with status 0 committed, 1 no such
job, 2 lock lost, 4 variables changed since they were read, 5 a new job names a process
instance that does not exist ({5, {pi}}), 6 a new job's type has its priority rule in
Python and none was given ({6, {type}}) (nothing is written unless the status is 0)
]]
-- @include keys
-- @include wake_message
-- @include now_ms
-- @include num
-- @include check_owner
-- @include create_job
-- @include resolve_new
-- @include place_job
-- @include lock_job
-- @include release_pi
-- @include arrive_at_join
-- @include is_pi_exclusive
-- @include record_history
-- @include trim_history
-- @include arg_int
-- @include arg_flag
-- @include arg_job_fields
-- @include count_gone_jobs
-- @include forget_job
-- @include note_attempt
-- @include finish_trail
-- @include trim_results

-- Every argument is checked before anything is read or written.
local id, owner = ARGV[3], ARGV[2]
local lock_ms = arg_int(5, 1, 86400000)
local history_len, history_ttl = arg_int(6, 0, 70368744177664), arg_int(7, 0, 70368744177664)
local join_count = arg_int(11, 0, 1000000)
local new_at = 11 + 1 + join_count * 8
for k = 1, join_count do
  local b = 12 + (k - 1) * 8
  arg_int(b, 1, 1000000)
  arg_job_fields(b + 1)
end
local new_count = arg_int(new_at, 0, 1000000)
for k = 1, new_count do
  local b = new_at + 1 + (k - 1) * 9
  arg_job_fields(b)
  arg_int(b + 7, 0, join_count)
  arg_flag(b + 8)
end
local end_at = new_at + 1 + new_count * 9
arg_flag(end_at)
if #ARGV < end_at or #ARGV > end_at + 3 then
  return redis.error_reply('REXEC:BAD_ARGUMENT commit expects ' .. end_at .. ' arguments, got ' .. #ARGV)
end

local j, status = check_owner(id, owner, ARGV[4])
if not j then return {status, {}} end
local var_pi = ARGV[8]
local pi_rec
if var_pi ~= '' then
  pi_rec = redis.call('HGET', K.pis, var_pi)
  if not pi_rec or string.match(pi_rec, '^([^|]*)|') ~= ARGV[9] then return {4, {}} end
end

-- Every process instance a new job names must exist (checked before any write).
do
  local checks = {}
  for k = 1, join_count do checks[#checks + 1] = ARGV[12 + (k - 1) * 8 + 6] end
  for k = 1, new_count do checks[#checks + 1] = ARGV[new_at + 1 + (k - 1) * 9 + 5] end
  local known = {}
  for _, pi in ipairs(checks) do
    if pi ~= '' and not known[pi] then
      if redis.call('HEXISTS', K.pis, pi) == 0 then return {5, {pi}} end
      known[pi] = true
    end
  end
  local made = {}
  for k = 1, join_count do made[#made + 1] = 12 + (k - 1) * 8 + 1 end
  for k = 1, new_count do made[#made + 1] = new_at + 1 + (k - 1) * 9 end
  for _, b in ipairs(made) do
    if not resolve_new(ARGV[b], ARGV[b + 1], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], false) then
      return {6, {ARGV[b]}}
    end
  end
end

local now = now_ms()
local woke = false
-- Variables.
if var_pi ~= '' then
  local rev, pk = string.match(pi_rec, '^([^|]*)|(.*)$')
  redis.call('HSET', K.pis, var_pi, num(tonumber(rev) + 1) .. '|' .. pk)
  redis.call('HSET', K.vars, var_pi, ARGV[10])
  local forms = ARGV[end_at + 1]
  if forms and forms ~= '' then
    redis.call('HSET', K.pvals, var_pi, forms)
  elseif forms then
    redis.call('HDEL', K.pvals, var_pi)
  end
end
-- Joins created by forks in this commit.
local join_ids = {}
for k = 1, join_count do
  local b = 12 + (k - 1) * 8
  local jid = 'j' .. num(redis.call('INCR', K.seq))
  join_ids[k] = jid
  redis.call('HSET', K.joins, jid .. '|n', ARGV[b],
    jid .. '|f', table.concat({ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]}, '|'),
    jid .. '|pl', ARGV[b + 7])
end
-- New jobs: follow-ups and fork branches.
local locked = {}
local expires = now + lock_ms
for k = 1, new_count do
  local b = new_at + 1 + (k - 1) * 9
  local new_id, nj = create_job({ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]}, now)
  local join = tonumber(ARGV[b + 7])
  if join > 0 then redis.call('HSET', K.branches, new_id, join_ids[join]) end
  if ARGV[b + 8] == '1' and nj.d <= now and nj.s == '0' and nj.x == '1' and nj.pi == j.pi
      and redis.call('SISMEMBER', K.suspended_types, nj.t) == 0 then
    lock_job(new_id, nj, owner, expires)
    locked[#locked + 1] = new_id
    locked[#locked + 1] = redis.call('HGET', K.jobs, new_id)
    locked[#locked + 1] = ARGV[b + 6] ~= '' and ARGV[b + 6] or false
  elseif place_job(new_id, nj, now) == 'ready' then
    woke = true
  end
end
-- Ending the process instance (Camunda's end event): its record and variables go.
if ARGV[end_at] == '1' and j.pi ~= '' then
  redis.call('HDEL', K.pis, j.pi)
  redis.call('HDEL', K.vars, j.pi)
  redis.call('HDEL', K.pvals, j.pi)
  redis.call('SREM', K.suspended_pis, j.pi)
end
-- The job itself: gone, its instance released (after any follow-up took its lock),
-- and, if it was a branch, arrived at its join.
redis.call('HDEL', K.jobs, id)
forget_job(id, j, 'completed')
redis.call('HDEL', K.payloads, id)
redis.call('HDEL', K.errors, id)
redis.call('ZREM', K.locked, id)
if is_pi_exclusive(j) and release_pi(j.pi) then woke = true end
if arrive_at_join(id, now) == 'ready' then woke = true end
count_gone_jobs(j.t, 1)
local trail = note_attempt(id, j, now, owner, ARGV[end_at + 3] or '', '', true)
if finish_trail(id, j, now, 'completed', ARGV[end_at + 2] or '', trail) then
  trim_results(now)
end
if history_len > 0 then
  record_history(id, j, 'completed', history_len)
  trim_history(now, history_ttl)
end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
return {0, locked}
