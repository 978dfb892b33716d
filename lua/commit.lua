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
last: '1' to end the job's process instance (its record and variables go), else '0'
Reply: {status, {id, record, payload or nil, ...}} with status 0 committed, 1 no such
job, 2 lock lost, 4 variables changed since they were read, 5 a new job names a process
instance that does not exist (nothing is written unless the status is 0)
]]
-- @include keys
-- @include now_ms
-- @include num
-- @include check_owner
-- @include create_job
-- @include place_job
-- @include lock_job
-- @include release_pi
-- @include arrive_at_join
-- @include is_pi_exclusive
-- @include record_history
-- @include trim_history
-- @include forget_job

local id = ARGV[3]
local j, status = check_owner(id, ARGV[2], ARGV[4])
if not j then return {status, {}} end
local owner, lock_ms = ARGV[2], tonumber(ARGV[5])
local var_pi = ARGV[8]
local pi_rec
if var_pi ~= '' then
  pi_rec = redis.call('HGET', K.pis, var_pi)
  if not pi_rec or string.match(pi_rec, '^([^|]*)|') ~= ARGV[9] then return {4, {}} end
end

-- Every process instance a new job names must exist (checked before any write).
do
  local at = 11 + 1 + tonumber(ARGV[11]) * 8
  local checks = {}
  for k = 1, tonumber(ARGV[11]) do checks[#checks + 1] = ARGV[12 + (k - 1) * 8 + 6] end
  for k = 1, tonumber(ARGV[at]) do checks[#checks + 1] = ARGV[at + 1 + (k - 1) * 9 + 5] end
  for _, pi in ipairs(checks) do
    if pi ~= '' and redis.call('HEXISTS', K.pis, pi) == 0 then return {5, {pi}} end
  end
end

local now = now_ms()
local woke = false
-- Variables.
if var_pi ~= '' then
  local rev, pk = string.match(pi_rec, '^([^|]*)|(.*)$')
  redis.call('HSET', K.pis, var_pi, num(tonumber(rev) + 1) .. '|' .. pk)
  redis.call('HSET', K.vars, var_pi, ARGV[10])
end
-- Joins created by forks in this commit.
local at = 11
local join_ids = {}
for k = 1, tonumber(ARGV[at]) do
  local b = at + 1 + (k - 1) * 8
  local jid = 'j' .. num(redis.call('INCR', K.seq))
  join_ids[k] = jid
  redis.call('HSET', K.joins, jid .. '|n', ARGV[b],
    jid .. '|f', table.concat({ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]}, '|'),
    jid .. '|pl', ARGV[b + 7])
end
at = at + 1 + tonumber(ARGV[at]) * 8
-- New jobs: follow-ups and fork branches.
local locked = {}
local expires = now + lock_ms
for k = 1, tonumber(ARGV[at]) do
  local b = at + 1 + (k - 1) * 9
  local new_id, nj = create_job({ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]}, now)
  local join = tonumber(ARGV[b + 7])
  if join > 0 then redis.call('HSET', K.branches, new_id, join_ids[join]) end
  if ARGV[b + 8] == '1' and nj.d <= now and redis.call('SISMEMBER', K.suspended_types, nj.t) == 0 then
    lock_job(new_id, nj, owner, expires)
    locked[#locked + 1] = new_id
    locked[#locked + 1] = redis.call('HGET', K.jobs, new_id)
    locked[#locked + 1] = ARGV[b + 6] ~= '' and ARGV[b + 6] or false
  elseif place_job(new_id, nj, now) == 'ready' then
    woke = true
  end
end
-- Ending the process instance (Camunda's end event): its record and variables go.
if ARGV[at + 1 + tonumber(ARGV[at]) * 9] == '1' and j.pi ~= '' then
  redis.call('HDEL', K.pis, j.pi)
  redis.call('HDEL', K.vars, j.pi)
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
if tonumber(ARGV[6]) > 0 then
  record_history(id, j, 'completed', tonumber(ARGV[6]))
  trim_history(now, tonumber(ARGV[7]))
end
if woke then redis.call('PUBLISH', ARGV[1], '1') end
return {0, locked}
