--[[ enqueue: creates jobs (one call per chunk; all or nothing).
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; ARGV[2] number of jobs n; then 7 fields per job:
  type, priority key ('' = none given: the override, instance or 0 applies),
  due ('' = now, '+ms' = after a delay, 'ms' = at that time), retries,
  exclusive ('1'/'0'), process instance id ('' = none), msgpack payload ('' = none)
Reply: id of the first job; the others follow in order (ids are consecutive).
Errors: 'REXEC:PI_NOT_FOUND <pi>'; nothing is written then.
]]
-- @include keys
-- @include arg_int
-- @include now_ms
-- @include encode_job
-- @include place_job
-- @include ready_member
-- @include scheduled_member
-- @include call_chunked
-- @include index_instance_job

local n = arg_int(2, 1, 100000)
if #ARGV ~= 2 + 7 * n then return redis.error_reply('REXEC:BAD_ARGUMENT expected 7 fields per job') end
for i = 0, n - 1 do
  local base = 3 + i * 7
  local pk, due, x = ARGV[base + 1], ARGV[base + 2], ARGV[base + 4]
  arg_int(base + 3, 1, 1000000)
  if ARGV[base] == '' or string.find(ARGV[base], '|', 1, true) then
    return redis.error_reply('REXEC:BAD_ARGUMENT job type ' .. ARGV[base])
  end
  if pk ~= '' and not string.match(pk, '^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT priority key ' .. pk)
  end
  if due ~= '' and not string.match(due, '^%+?%d+$') then
    return redis.error_reply('REXEC:BAD_ARGUMENT due ' .. due)
  end
  if x ~= '0' and x ~= '1' then return redis.error_reply('REXEC:BAD_ARGUMENT exclusive ' .. x) end
end
local now = now_ms()
local pi_keys = {}
for i = 0, n - 1 do
  local pi = ARGV[3 + i * 7 + 5]
  if pi ~= '' and pi_keys[pi] == nil then
    local rec = redis.call('HGET', K.pis, pi)
    if not rec then return redis.error_reply('REXEC:PI_NOT_FOUND ' .. pi) end
    pi_keys[pi] = string.match(rec, '^[^|]*|(.*)$')
  end
end

local last = redis.call('INCRBY', K.seq, n)
local first = last - n + 1
local overrides, seen_types = {}, {}
local woke = false
local records, payloads, ready, scheduled = {}, {}, {}, {}
local now_s = num(now)
for i = 0, n - 1 do
  local base = 3 + i * 7
  local jtype, pk, due = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local pi, payload = ARGV[base + 5], ARGV[base + 6]
  if seen_types[jtype] == nil then
    seen_types[jtype] = true
    redis.call('SADD', K.types, jtype)
    overrides[jtype] = redis.call('HGET', K.overrides, jtype)
  end
  if overrides[jtype] then
    pk = overrides[jtype]
  elseif pk == '' then
    pk = (pi ~= '' and pi_keys[pi] ~= '') and pi_keys[pi] or '7fffffffffffffff'
  end
  local d
  if due == '' then
    d = now
  elseif string.sub(due, 1, 1) == '+' then
    d = now + tonumber(string.sub(due, 2))
  else
    d = tonumber(due)
  end
  local id = num(first + i)
  local j = {t = jtype, p = pk, d = d, r = tonumber(ARGV[base + 3]), x = ARGV[base + 4],
             pi = pi, v = 0, o = '', e = '', s = '0'}
  records[#records + 1] = id
  records[#records + 1] = encode_job(j)
  index_instance_job(id, j)
  if payload ~= '' then
    payloads[#payloads + 1] = id
    payloads[#payloads + 1] = payload
  end
  if j.x == '1' and pi ~= '' then
    -- exclusive jobs of an instance need the instance's lock state: one at a time
    if place_job(id, j, now) == 'ready' then woke = true end
  elseif d > now then
    scheduled[#scheduled + 1] = d
    scheduled[#scheduled + 1] = scheduled_member(id, j)
  else
    ready[#ready + 1] = 0
    ready[#ready + 1] = ready_member(id, j)
  end
end
call_chunked('HSET', K.jobs, records)
if #payloads > 0 then call_chunked('HSET', K.payloads, payloads) end
if #scheduled > 0 then
  call_chunked('ZADD', K.scheduled, scheduled)
  woke = true  -- idle workers learn the new next due time, and wake up for it
end
if #ready > 0 then
  call_chunked('ZADD', K.ready, ready)
  woke = true
end
if woke then redis.call('PUBLISH', ARGV[1], '1') end
return first
