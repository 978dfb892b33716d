--[[ enqueue: creates jobs (one call per chunk; all or nothing).
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; ARGV[2] number of jobs n; then 7 fields per job:
  type, priority ('' = none given, '<pk>' explicit, 'd<pk>' the app's own rule result),
  due ('' = now, '+ms' = after a delay, 'ms' = at that time),
  retries ('<n>' explicit, 'd<n>' the app's default, '' = none),
  exclusive ('1'/'0' explicit, 'd1'/'d0' the app's default, '' = none),
  process instance id ('' = none), msgpack payload ('' = none).
  What is not explicit comes from the stored job definition (resolve_new, SPEC §4).
then (optional) n unique keys, one per job ('' = none, at most 256 bytes): a job whose
  key is held by a job that is queued, scheduled or running (not an incident: incidents
  free their keys, hold_key) is not created, and that job's id is its reply; two jobs of
  one call with one key are one.
Reply: id of the first job, the others following in order (ids are consecutive); with
unique keys, the list of the jobs' ids in order instead.
Errors: 'REXEC:PI_NOT_FOUND <pi>', 'REXEC:RULE_UNAVAILABLE <type>'; nothing is written then.
]]
-- @include keys
-- @include arg_int
-- @include now_ms
-- @include encode_job
-- @include place_job
-- @include ready_member
-- @include scheduled_member
-- @include call_chunked
-- @include count_new_jobs
-- @include resolve_new
-- @include wake_message
-- @include index_instance_job
-- @include start_trail
-- @include decode_job

local n = arg_int(2, 1, 100000)
local keyed = #ARGV == 2 + 8 * n
if #ARGV ~= 2 + 7 * n and not keyed then
  return redis.error_reply('REXEC:BAD_ARGUMENT expected 7 fields per job (and a key each)')
end
if keyed then
  for i = 1, n do
    if #ARGV[2 + 7 * n + i] > 256 then
      return redis.error_reply('REXEC:BAD_ARGUMENT unique key longer than 256 bytes')
    end
  end
end
for i = 0, n - 1 do
  local base = 3 + i * 7
  local pk, due, x = ARGV[base + 1], ARGV[base + 2], ARGV[base + 4]
  local r = ARGV[base + 3]
  local rn = tonumber(string.match(r, '^d?(%d+)$'))
  if r ~= '' and not (rn and rn >= 1 and rn <= 1000000) then
    return redis.error_reply('REXEC:BAD_ARGUMENT retries ' .. r)
  end
  if ARGV[base] == '' or string.find(ARGV[base], '|', 1, true) then
    return redis.error_reply('REXEC:BAD_ARGUMENT job type ' .. ARGV[base])
  end
  if pk ~= '' and not string.match(pk, '^d?%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT priority key ' .. pk)
  end
  if due ~= '' and not string.match(due, '^%+?%d+$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT due ' .. due)
  end
  if x ~= '' and not string.match(x, '^d?[01]$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT exclusive ' .. x)
  end
end
local now = now_ms()
local pi_keys = {}  -- instances known to exist
for i = 0, n - 1 do
  local pi = ARGV[3 + i * 7 + 5]
  if pi ~= '' and pi_keys[pi] == nil then
    local rec = redis.call('HGET', K.pis, pi)
    if not rec then return redis.error_reply('REXEC:PI_NOT_FOUND ' .. pi) end
    pi_keys[pi] = true
  end
end
-- Every job resolved against the store before the first write.
local resolved = {}
for i = 0, n - 1 do
  local base = 3 + i * 7
  local pk, r, x, s = resolve_new(ARGV[base], ARGV[base + 1], ARGV[base + 3], ARGV[base + 4],
    ARGV[base + 5], false)
  if not pk then return redis.error_reply(r) end
  resolved[i] = {pk, r, x, s}
end

-- Unique keys: a job whose key is held by a job that exists is not created.
local held, claimed, fresh = {}, {}, n
if keyed then
  for i = 0, n - 1 do
    local key = ARGV[3 + 7 * n + i]
    if key ~= '' then
      if claimed[key] then
        held[i] = claimed[key]
      else
        local other = redis.call('HGET', K.unique_keys, key)
        local oj = other and decode_job(redis.call('HGET', K.jobs, other))
        if oj and (oj.r > 0 or oj.o ~= '') then
          held[i] = other
        else
          claimed[key] = i
        end
      end
      if held[i] then fresh = fresh - 1 end
    end
  end
end
local first = redis.call('INCRBY', K.seq, fresh) - fresh + 1
local ids, next_id = {}, first
for i = 0, n - 1 do
  if not held[i] then
    ids[i] = num(next_id)
    next_id = next_id + 1
  end
end
local of_type = {}
local woke = false
local records, payloads, ready, scheduled, future = {}, {}, {}, {}, {}
local now_s = num(now)
for i = 0, n - 1 do
  if not held[i] then
    local base = 3 + i * 7
    local jtype, due = ARGV[base], ARGV[base + 2]
    local pi, payload = ARGV[base + 5], ARGV[base + 6]
    local pk, r, x, s = unpack(resolved[i])
    of_type[jtype] = (of_type[jtype] or 0) + 1
    local d
    if due == '' then
      d = now
    elseif string.sub(due, 1, 1) == '+' then
      d = now + tonumber(string.sub(due, 2))
    else
      d = tonumber(due)
    end
    local id = ids[i]
    local j = {t = jtype, p = pk, d = d, r = r, x = x, pi = pi, v = 0, o = '', e = '', s = s}
    start_trail(id, j, now)
    if keyed and ARGV[3 + 7 * n + i] ~= '' then
      redis.call('HSET', K.unique_keys, ARGV[3 + 7 * n + i], id)
      redis.call('HSET', K.job_keys, id, ARGV[3 + 7 * n + i])
    end
    records[#records + 1] = id
    records[#records + 1] = encode_job(j)
    index_instance_job(id, j)
    if payload ~= '' then
      payloads[#payloads + 1] = id
      payloads[#payloads + 1] = payload
    end
    if (j.x == '1' and pi ~= '') or s == '1' then
      -- exclusive jobs of an instance need the instance's lock state: one at a time
      if place_job(id, j, now) == 'ready' then woke = true end
    elseif d > now then
      scheduled[#scheduled + 1] = d
      scheduled[#scheduled + 1] = scheduled_member(id, j)
      future[#future + 1] = 0
      future[#future + 1] = ready_member(id, j)
      wake_note(jtype, pk)
    else
      ready[#ready + 1] = 0
      ready[#ready + 1] = ready_member(id, j)
      wake_note(jtype, pk)
    end
  end
end
for jtype, k in pairs(of_type) do count_new_jobs(jtype, k) end
if #records > 0 then call_chunked('HSET', K.jobs, records) end
if #payloads > 0 then call_chunked('HSET', K.payloads, payloads) end
if #scheduled > 0 then
  call_chunked('ZADD', K.scheduled, scheduled)
  call_chunked('ZADD', K.future, future)
  woke = true  -- idle workers learn the new next due time, and wake up for it
end
if #ready > 0 then
  call_chunked('ZADD', K.ready, ready)
  woke = true
end
if woke then redis.call('PUBLISH', ARGV[1], wake_message()) end
if not keyed then return first end
local reply = {}
for i = 0, n - 1 do
  local h = held[i]
  if type(h) == 'number' then h = ids[h] end
  reply[i + 1] = ids[i] or h
end
return reply
