--[[ complete: commits finished jobs, each only if still locked by this owner at the
revision it was acquired with. Each job's commit is independent of the others'.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] owner; [3] history length cap (0 = no history); [4] history
TTL ms (0 = none); then 4 fields per job: job id, revision, the handler's return value
as msgpack ('' = none), when the execution started (ms, '' = unknown)
A job whose type keeps results leaves its result behind (finish_trail).
Reply: one status per job: 0 committed, 1 no such job, 2 lock lost
]]
-- @include keys
-- @include wake_message
-- @include decode_job
-- @include release_pi
-- @include is_pi_exclusive
-- @include call_chunked
-- @include now_ms
-- @include arrive_at_join
-- @include record_history
-- @include trim_history
-- @include arg_int
-- @include definition_of
-- @include note_attempt
-- @include finish_trail
-- @include drop_trail
-- @include trim_results
-- @include read_chunked
-- @include count_gone_jobs
-- @include forget_job

local owner = ARGV[2]
local history_len, history_ttl = arg_int(3, 0, 70368744177664), arg_int(4, 0, 70368744177664)
if (#ARGV - 4) % 4 ~= 0 then
  return redis.error_reply('REXEC:BAD_ARGUMENT expected 4 fields per job from ARGV[5]')
end
local ids = {}
for i = 5, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end
local records = read_chunked('HMGET', K.jobs, ids)
local statuses, done, seen = {}, {}, {}
local gone_of_type, released = {}, {}
local woke = false
local kept = false
local now
for k, id in ipairs(ids) do
  local j = decode_job(records[k])
  if not j or seen[id] then
    statuses[k] = 1  -- gone, or listed twice (the first one committed it)
  elseif j.o ~= owner or j.v ~= tonumber(ARGV[2 + 4 * k]) then
    statuses[k] = 2
  else
    statuses[k] = 0
    seen[id] = true
    done[#done + 1] = id
    gone_of_type[j.t] = (gone_of_type[j.t] or 0) + 1
    record_history(id, j, 'completed', history_len)
    forget_job(id, j, 'completed')
    local def = definition_of(j.t)
    if def and def.keep > 0 then
      now = now or now_ms()
      local t = note_attempt(id, j, now, owner, ARGV[4 + 4 * k], '', true)
      kept = finish_trail(id, j, now, 'completed', ARGV[3 + 4 * k], t) or kept
    else
      drop_trail(id)
    end
    if is_pi_exclusive(j) then
      if not released[j.pi] then released[#released + 1] = j.pi end
      released[j.pi] = (released[j.pi] or 0) + 1
    end
  end
end
-- Their instances are released (completed jobs are never among the parked ones).
for _, pi in ipairs(released) do
  if release_pi(pi, released[pi]) then woke = true end
end
if #done > 0 then
  -- branches of forks arrive at their joins (most jobs are none: one HMGET tells)
  local joins = read_chunked('HMGET', K.branches, done)
  for k, jid in ipairs(joins) do
    if jid then
      now = now or now_ms()
      if arrive_at_join(done[k], now) == 'ready' then woke = true end
    end
  end
  call_chunked('HDEL', K.jobs, done)
  call_chunked('HDEL', K.payloads, done)
  call_chunked('HDEL', K.errors, done)
  call_chunked('ZREM', K.locked, done)
  for t, k in pairs(gone_of_type) do count_gone_jobs(t, k) end
end
if history_len > 0 and #done > 0 then trim_history(now_ms(), history_ttl) end
if kept then trim_results(now) end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
return statuses
