--[[ fail: records a failed execution of a locked job and unlocks it.
Retries drop by one unless the failure was an optimistic-locking conflict; the job is due
again after the wait of its type's stored retry cycle (or, for a type never deployed,
the wait the caller gives); at 0 retries it becomes an incident.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] owner; [3] job id; [4] revision; [5] error text ('' = keep);
[6] retries to consume (1 or 0); [7] wait before the next execution, ms, when the type
has no stored definition; [8] history length cap (0 or absent = no history);
[9] history TTL ms (0 = none); (optional, for results and retry policies:)
[10] the error entry kept with the results ('' = none; see note_attempt); [11] '1' to
give up at once (rexec.Fail: an incident now); [12] the failure's exception class paths,
its own first, then its bases, comma-separated: a retry_on policy not naming any of them,
or a no_retry_on policy naming one, gives up at once too; [13] when the execution
started (ms, '' = unknown)
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
-- @include record_history
-- @include trim_history
-- @include note_attempt
-- @include hold_key

local id = ARGV[3]
local consumed, wait_ms = arg_int(6, 0, 1), arg_int(7, 0, 70368744177664)
local history_len = ARGV[8] and arg_int(8, 0, 70368744177664) or 0
local history_ttl = ARGV[9] and arg_int(9, 0, 70368744177664) or 0
local j, status = check_owner(id, ARGV[2], ARGV[4])
if not j then return {status, ''} end
local now = now_ms()
j.r = math.max(0, j.r - consumed)
local def = consumed > 0 and definition_of(j.t)
if consumed > 0 then
  local give_up = ARGV[11] == '1'
  local paths = ARGV[12] or ''
  if not give_up and def and (def.ron ~= '' or def.nron ~= '') then
    local function names_one(list)
      for path in string.gmatch(paths, '[^,]+') do
        if string.find(list, ',' .. path .. ',', 1, true) then return true end
      end
      return false
    end
    give_up = (def.nron ~= '' and names_one(def.nron)) or (def.ron ~= '' and not names_one(def.ron))
  end
  if give_up then j.r = 0 end
  note_attempt(id, j, now, ARGV[2], ARGV[13] or '', ARGV[10] or '')
end
j.d = now + (def and retry_wait(def, j.r) or wait_ms)
j.v = j.v + 1
if ARGV[5] ~= '' then redis.call('HSET', K.errors, id, ARGV[5]) end
local state, woke = unlock_job(id, j, now)
if state == 'incident' then
  redis.call('HINCRBY', K.counters, 'incidents', 1)
  hold_key(id, j)
end
if consumed > 0 then
  local outcome = state == 'incident' and 'incident' or 'failed'
  redis.call('HINCRBY', K.counters, outcome .. '|' .. j.t, 1)
  if history_len > 0 then
    record_history(id, j, outcome, history_len, ARGV[5])
    trim_history(now, history_ttl)
  end
end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
return {0, state}
