--[[ check_read: a consistent snapshot for the invariant checker (rexec/check.py), read in
one atomic call so that workers running meanwhile can never show it a job half-moved.
Writes nothing.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] what to read: 'jobs' (then ARGV[2..] are job ids) or the index that ARGV[2..]
are members of: 'ready', 'scheduled', 'suspended', 'pijobs', 'parked', 'locked' or
'incidents'
Reply: {now, flat list}. For 'jobs', 15 fields per id: its record or nil; payload present
and error present (0/1); the join it is a branch of, or nil; that join's count ('|n')
and job fields ('|f'), or nil; then, only when the record can be read (else nil): its
type is known (0/1; 0 too when type_jobs counts no job of that type); its score in
ready, scheduled, suspended and pijobs under the members its record calls for
(ready_member, scheduled_member, pi_member), in locked and in incidents (nil where
absent); pilocks of its process instance (nil when none); its score in parked.
For an index, 4 fields per member: its score, or nil when it is gone; the job id it
names, or nil when it names none; that job's record, or nil; the member that record
calls for in this index, or nil.
]]
-- @include keys
-- @include now_ms
-- @include decode_job
-- @include ready_member
-- @include scheduled_member
-- @include pi_member
-- @include is_pi_exclusive
-- @include expected_member

-- A record the scripts can work with: decoded, with numeric due, retries and revision.
local function usable(raw)
  local j = decode_job(raw)
  if j and j.d and j.r and j.v then return j end
  return nil
end

local function zscore(index, m)
  if index == 'ready' then return redis.call('ZSCORE', K.ready, m) end
  if index == 'scheduled' then return redis.call('ZSCORE', K.scheduled, m) end
  if index == 'suspended' then return redis.call('ZSCORE', K.suspended, m) end
  if index == 'pijobs' then return redis.call('ZSCORE', K.pijobs, m) end
  if index == 'parked' then return redis.call('ZSCORE', K.parked, m) end
  if index == 'locked' then return redis.call('ZSCORE', K.locked, m) end
  return redis.call('ZSCORE', K.incidents, m)
end

-- The job id an index member names (see ready_member, pi_member), or false.
local function member_id(index, m)
  if index == 'locked' or index == 'incidents' then return m end
  local key
  if index == 'pijobs' or index == 'parked' then
    key = string.match(m, '^[^|]*|([^|]*)|[^|]*$')
  elseif index == 'scheduled' then
    key = string.match(m, '^([^|]*)|')
  else
    key = string.match(m, '^[^|]*|([^|]*)')
  end
  if not key or #key < 30 then return false end
  return string.sub(key, 30)
end

local what = ARGV[1]
local indexes = {ready = true, scheduled = true, suspended = true, pijobs = true,
                 parked = true, locked = true, incidents = true}
if what ~= 'jobs' and not indexes[what] then
  return redis.error_reply('REXEC:BAD_ARGUMENT check_read cannot read ' .. tostring(what))
end
local now = now_ms()
local out = {}
local function add(value) out[#out + 1] = value or false end

if what == 'jobs' then
  for i = 2, #ARGV do
    local id = ARGV[i]
    local raw = redis.call('HGET', K.jobs, id)
    local jid = redis.call('HGET', K.branches, id)
    add(raw)
    add(redis.call('HEXISTS', K.payloads, id))
    add(redis.call('HEXISTS', K.errors, id))
    add(jid)
    if jid then
      add(redis.call('HGET', K.joins, jid .. '|n'))
      add(redis.call('HGET', K.joins, jid .. '|f'))
    else
      add(false)
      add(false)
    end
    local j = raw and usable(raw)
    if j then
      local m = ready_member(id, j)
      local counted = tonumber(redis.call('HGET', K.type_jobs, j.t))
      add(counted and counted < 1 and 0 or redis.call('SISMEMBER', K.types, j.t))
      add(redis.call('ZSCORE', K.ready, m))
      add(redis.call('ZSCORE', K.scheduled, scheduled_member(id, j)))
      add(redis.call('ZSCORE', K.suspended, m))
      add(is_pi_exclusive(j) and redis.call('ZSCORE', K.pijobs, pi_member(id, j)))
      add(redis.call('ZSCORE', K.locked, id))
      add(redis.call('ZSCORE', K.incidents, id))
      add(j.pi ~= '' and redis.call('HGET', K.pilocks, j.pi))
      add(is_pi_exclusive(j) and redis.call('ZSCORE', K.parked, pi_member(id, j)))
    else
      for _ = 1, 9 do add(false) end
    end
  end
else
  for i = 2, #ARGV do
    local m = ARGV[i]
    add(zscore(what, m))
    local id = member_id(what, m)
    add(id)
    local raw = id and redis.call('HGET', K.jobs, id)
    add(raw)
    local j = raw and usable(raw)
    add(j and expected_member(what, id, j))
  end
end
return {now, out}
