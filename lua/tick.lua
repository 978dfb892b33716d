--[[ tick: fires one tick of a periodic schedule, compare-and-set (rexec/periodic.py).
The caller saw the schedule due at `tick ms` and computed, in Python with the cron
library, the tick to store next and whether this tick creates its job (a tick that was
missed creates one only with catch_up). Only the caller that still finds `tick ms`
stored, with the definition it read (fingerprint), does anything: of any number of
workers racing on one tick, exactly one creates the job. The job is created as enqueue
creates one (the stored definition, overriding priority and wake-ups apply), due at
the tick.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; ARGV[2] schedule name; ARGV[3] fingerprint it read;
ARGV[4] tick ms it saw due; ARGV[5] tick ms to store next (> ARGV[4]);
ARGV[6] '1' create this tick's job, '0' skip it; ARGV[7] outcome to record
('created', 'caught_up', 'skipped')
Reply: {status, job id or '', next tick ms stored (-1: none)}; status 0 created,
1 skipped, 2 lost (another worker ticked it, or it was changed or removed: nothing
written), 3 not yet due by Redis time (nothing written), 4 the type's priority rule is
in Python and the schedule carries no result of it (no job; the schedule moves on)
]]
-- @include keys
-- @include arg_int
-- @include now_ms
-- @include num
-- @include create_job
-- @include resolve_new
-- @include place_job
-- @include wake_message

local name = ARGV[2]
local seen = arg_int(4, 0, 70368744177664)
local nxt = arg_int(5, 0, 70368744177664)
if nxt <= seen then return redis.error_reply('REXEC:BAD_ARGUMENT next tick ' .. ARGV[5]) end
if ARGV[6] ~= '0' and ARGV[6] ~= '1' then
  return redis.error_reply('REXEC:BAD_ARGUMENT create ' .. ARGV[6])
end
local outcome = ARGV[7]
if not string.match(outcome, '^[a-z_]+$') then
  return redis.error_reply('REXEC:BAD_ARGUMENT outcome ' .. outcome)
end

local cur = redis.call('ZSCORE', K.periodic_due, name)
if not cur then return {2, '', -1} end
cur = tonumber(cur)
if cur ~= seen then return {2, '', cur} end
local rec = redis.call('HGET', K.periodic, name)
if not rec then return {2, '', cur} end
local fp, t, pk, r, x, payload = string.match(rec,
  '^([^|]*)|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
if not fp or fp ~= ARGV[3] then return {2, '', cur} end
local now = now_ms()
if seen > now then return {3, '', cur} end

local status, id = 1, ''
if ARGV[6] == '1' then
  if not resolve_new(t, pk, r, x, '', false) then
    status, outcome = 4, 'rule_unavailable'
  else
    local j
    id, j = create_job({t, pk, num(seen), r, x, '', payload}, now)
    if place_job(id, j, now) == 'ready' then redis.call('PUBLISH', ARGV[1], wake_message()) end
    status = 0
  end
end
redis.call('ZADD', K.periodic_due, nxt, name)
redis.call('HSET', K.periodic_last, name, table.concat({num(seen), outcome, id, num(now)}, '|'))
return {status, id, nxt}
