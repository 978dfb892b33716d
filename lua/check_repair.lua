--[[ check_repair: repairs jobs for the invariant checker (`rexec check --repair`), each
one atomically and without ever deleting a job record. For each job it drops the given
index members that are not the ones its record calls for (all of them when the record
is gone), then files the job exactly where its state calls for: a locked job in the lock
index under its expiry (a lock without one expires now), an unlocked job (which loses
any lock expiry) through place_job, keeping an incident's time. Its type becomes known.
When the record is gone, its payload and error go, and a branch of a fork arrives at its
join (the last arrival creates the join job). A branch entry naming a join that no longer
exists is dropped. A record the scripts cannot read is left alone.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; then one group per job: [2] its id ('' for members that name no
job), [3] the number k of its members to drop, then k pairs: index (ready, scheduled,
suspended, pijobs, parked, locked or incidents), member; the next job's group follows.
Reply: per job, where it is now: '' when its record is gone, 'bad' when the record cannot
be read, else 'locked', 'incident', 'suspended', 'scheduled', 'ready' or 'parked'.
]]
-- @include keys
-- @include now_ms
-- @include num
-- @include decode_job
-- @include encode_job
-- @include ready_member
-- @include scheduled_member
-- @include pi_member
-- @include is_pi_exclusive
-- @include expected_member
-- @include place_job
-- @include unplace_job
-- @include arrive_at_join

local JOIN_FIELDS = '^[^|]*|[^|]*|[^|]*|([^|]*)|[^|]*|[^|]*$'

local function usable(raw)
  local j = decode_job(raw)
  if j and j.d and j.r and j.v then return j end
  return nil
end

local function zrem(index, m)
  if index == 'ready' then return redis.call('ZREM', K.ready, m) end
  if index == 'scheduled' then
    -- its twin in future (same job, ready_member order: type first)
    local key, jtype, pi = string.match(m, '^([^|]*)|([^|]*)|?(.*)$')
    if key then redis.call('ZREM', K.future, jtype .. '|' .. key .. (pi ~= '' and ('|' .. pi) or '')) end
    return redis.call('ZREM', K.scheduled, m)
  end
  if index == 'suspended' then return redis.call('ZREM', K.suspended, m) end
  if index == 'pijobs' then return redis.call('ZREM', K.pijobs, m) end
  if index == 'parked' then return redis.call('ZREM', K.parked, m) end
  if index == 'locked' then return redis.call('ZREM', K.locked, m) end
  if index == 'incidents' then return redis.call('ZREM', K.incidents, m) end
  return redis.error_reply('REXEC:BAD_ARGUMENT check_repair knows no index ' .. tostring(index))
end

-- The join `jid` can still be arrived at: it has its count and readable job fields.
local function join_alive(jid)
  local f = redis.call('HMGET', K.joins, jid .. '|n', jid .. '|f')
  if not (f[1] and tonumber(f[1]) and f[2]) then return false end
  local retries = string.match(f[2], JOIN_FIELDS)
  return retries ~= nil and string.match(retries, '^d?%d*$') ~= nil
end

-- What a gone job leaves behind: its payload, its error, its arrival at its join.
local function clean_up(id, now)
  redis.call('HDEL', K.payloads, id)
  redis.call('HDEL', K.errors, id)
  local jid = redis.call('HGET', K.branches, id)
  if not jid then return '' end
  if join_alive(jid) then
    -- the join job's placement, so that a ready one wakes the workers
    return arrive_at_join(id, now) == 'ready' and 'joined' or ''
  end
  redis.call('HDEL', K.branches, id)
  return ''
end

local function refile(id, raw, j, now)
  local jid = redis.call('HGET', K.branches, id)
  if jid and redis.call('HEXISTS', K.joins, jid .. '|n') == 0 then
    redis.call('HDEL', K.branches, id)
  end
  local incident_at = redis.call('ZSCORE', K.incidents, id)
  unplace_job(id, j)
  redis.call('SADD', K.types, j.t)
  -- a count that says the type has no job would drop it while this job exists: the
  -- type is no longer counted (and so never dropped)
  local counted = tonumber(redis.call('HGET', K.type_jobs, j.t))
  if counted and counted < 1 then redis.call('HDEL', K.type_jobs, j.t) end
  if j.o ~= '' then
    local expires = tonumber(j.e)
    if not expires then
      expires = now
      j.e = num(now)
    end
    local rec = encode_job(j)
    if rec ~= raw then redis.call('HSET', K.jobs, id, rec) end
    redis.call('ZADD', K.locked, expires, id)
    return 'locked'
  end
  j.e = ''
  local rec = encode_job(j)
  if rec ~= raw then redis.call('HSET', K.jobs, id, rec) end
  if j.r <= 0 then
    redis.call('ZADD', K.incidents, incident_at or now, id)
    return 'incident'
  end
  return place_job(id, j, now)
end

-- Every group is checked before the first write.
local INDEX_NAMES = {ready = true, scheduled = true, suspended = true, pijobs = true,
                     parked = true, locked = true, incidents = true}
do
  local g = 2
  while g <= #ARGV do
    local k = tonumber(ARGV[g + 1])
    if not k or k < 0 or k ~= math.floor(k) or g + 1 + 2 * k > #ARGV then
      return redis.error_reply('REXEC:BAD_ARGUMENT check_repair group at ARGV[' .. g .. ']')
    end
    for p = g + 2, g + 2 * k, 2 do
      if not INDEX_NAMES[ARGV[p]] then
        return redis.error_reply('REXEC:BAD_ARGUMENT check_repair knows no index ' .. tostring(ARGV[p]))
      end
    end
    g = g + 2 + 2 * k
  end
end

local now = now_ms()
local reply = {}
local woke = false
local i = 2
while i <= #ARGV do
  local id, k = ARGV[i], tonumber(ARGV[i + 1])
  local raw = redis.call('HGET', K.jobs, id)
  local j = raw and usable(raw)
  for p = i + 2, i + 2 * k, 2 do
    local index, m = ARGV[p], ARGV[p + 1]
    if not raw or (j and m ~= expected_member(index, id, j)) then
      local removed = zrem(index, m)
      if type(removed) == 'table' then return removed end  -- an error reply
    end
  end
  local state
  if not raw then
    state = clean_up(id, now)
    if state == 'joined' then
      woke = true
      state = ''
    end
  elseif not j then
    state = 'bad'
  else
    state = refile(id, raw, j, now)
  end
  if state == 'ready' then woke = true end
  reply[#reply + 1] = state
  i = i + 2 + 2 * k
end
if woke then redis.call('PUBLISH', ARGV[1], '1') end
return reply
