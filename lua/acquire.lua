--[[ acquire: the whole acquisition in one atomic call (SPEC §2).
Promotes due jobs, reclaims expired locks, then locks up to n jobs in order (priority
desc, due asc, id asc), as batches: a plain job is a batch of one; an exclusive job of a
process instance comes with the instance's other ready exclusive jobs (up to the cap and
to what is left of n), and locks the instance. Exclusive jobs met while their instance
is locked are parked (moved out of the ready queue into parked until the instance is
released), so they are passed over once, not on every call.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] owner; [2] n, the most jobs to lock; [3] lock_ms; [4] lowest priority key allowed
('' = none: highest priority); [5] highest priority key allowed ('' = none); [6] exclusive
batch cap; [7] promote cap; [8] reclaim cap; [9..] job types to take (none = all active
types)
Reply: {now, next due ms or -1, reclaimed, parked, batches}; a batch is a flat list
{id, record, payload or nil, id, record, payload or nil, ...}
]]
-- @include keys
-- @include arg_int
-- @include now_ms
-- @include num
-- @include decode_job
-- @include encode_job
-- @include promote_due
-- @include reclaim_expired
-- @include active_types
-- @include next_candidates
-- @include key_in_range
-- @include call_chunked
-- @include read_chunked

local owner, n, lock_ms = ARGV[1], arg_int(2, 0, 1000000), arg_int(3, 1, 86400000)
local lo, hi, xcap = ARGV[4], ARGV[5], arg_int(6, 1, 1000000)
local promote_cap, reclaim_cap = arg_int(7, 1, 10000000), arg_int(8, 1, 10000000)
local filter = {}
for i = 9, #ARGV do filter[#filter + 1] = ARGV[i] end
local now = now_ms()
-- Promote in step with what is taken: a midnight burst is promoted over many calls,
-- instead of making the first acquisition pay for all of it. Order does not depend on
-- it (due jobs not promoted yet are found in priority order in future, see
-- next_candidates): promotion only keeps that walk short, so it moves about what a
-- call takes, which keeps the cost of a call flat while a large backlog falls due.
promote_due(now, math.min(promote_cap, n + 10))
local reclaimed = reclaim_expired(now, reclaim_cap)
local types = active_types(filter)
local allowed = {}
for _, t in ipairs(types) do allowed[t] = true end

-- Up to `limit` ready exclusive jobs of the (unlocked) instance `pi`, in order, taken out
-- of pijobs (their ready members are added to `unready`). Reads the instance's pijobs
-- range page by page, so the cost is the batch (plus jobs of types or priorities this
-- worker does not take), never the instance's whole backlog.
local function take_instance_batch(pi, limit, taken, unready)
  local batch, pms_taken = {}, {}
  local first, last = '[' .. pi .. '|', '[' .. pi .. '|~'
  local page = math.max(limit, 16)
  local contiguous, skipped = true, false
  while #batch < limit do
    local pms = redis.call('ZRANGEBYLEX', K.pijobs, first, last, 'LIMIT', 0, page)
    for _, pm in ipairs(pms) do
      if #batch >= limit then break end
      local key, jtype = string.match(pm, '^[^|]*|([^|]*)|([^|]*)$')
      if key and allowed[jtype] and key_in_range(key, lo, hi) then
        if skipped then contiguous = false end
        local id = string.sub(key, 30)
        pms_taken[#pms_taken + 1] = pm
        unready[#unready + 1] = jtype .. '|' .. key .. '|' .. pi
        taken[id] = true
        batch[#batch + 1] = id
      elseif #batch > 0 then
        skipped = true
      end
    end
    if #pms < page then break end
    first = '(' .. pms[#pms]
  end
  if #batch > 0 then
    -- one range removal (a single descent) when the batch is a run of the range
    if contiguous then
      redis.call('ZREMRANGEBYLEX', K.pijobs, '[' .. pms_taken[1], '[' .. pms_taken[#pms_taken])
    else
      call_chunked('ZREM', K.pijobs, pms_taken)
    end
    call_chunked('ZREM', K.parked, pms_taken)  -- none, unless a repair left some
  end
  return batch
end

-- 1. Choose: which jobs go into which batch. Nothing is locked yet.
local chosen = {}      -- batches of job ids
local count = 0        -- jobs in them
local taken = {}       -- id -> true
local locking_pi = {}  -- process instances this call locks -> true
local parked = 0
local park = {}        -- ZADD arguments for parked
local keep = {}        -- ZADD arguments for ready: handled candidates that stay ready
local unready = {}     -- ready members of the jobs taken with their instance
local park_cap = 10000
local future_skips = 32  -- future priority groups passed over per type and call
while count < n and parked < park_cap do
  local wanted = n - count
  local cands = next_candidates(types, lo, hi, wanted, now, future_skips)
  local parked_before = parked
  -- Per type, the candidates handled form a contiguous range of the ready queue: it is
  -- removed with one ZREMRANGEBYLEX rather than one ZREM each (a skiplist descent each).
  local first_of, last_of = {}, {}
  -- Due candidates still among the scheduled jobs (c.f) leave them: a member without
  -- its scheduled twin is stale, dropped and not taken. Exclusive jobs of an instance
  -- are promoted first, all of this round's at once, so that an instance's batch
  -- (read from pijobs) includes its due siblings.
  for _, c in ipairs(cands) do
    if c.f and c.pi ~= '' then
      c.f = false
      redis.call('ZREM', K.future, c.m)
      if redis.call('ZREM', K.scheduled, c.key .. '|' .. c.t .. '|' .. c.pi) == 0 then
        c.stale = true
      else
        redis.call('ZADD', K.pijobs, 0, c.pi .. '|' .. c.key .. '|' .. c.t)
        if not locking_pi[c.pi] and redis.call('HEXISTS', K.pilocks, c.pi) == 0 then
          redis.call('ZADD', K.ready, 0, c.m)
        end
      end
    end
  end
  for _, c in ipairs(cands) do
    if count >= n then break end
    if c.f then
      redis.call('ZREM', K.future, c.m)
      if redis.call('ZREM', K.scheduled, c.key .. '|' .. c.t) == 0 then c.stale = true end
    elseif not c.stale then
      if not first_of[c.t] then first_of[c.t] = c.m end
      last_of[c.t] = c.m
    end
    if c.stale then
      -- nothing to take
    elseif taken[c.id] then
      -- already chosen with its process instance earlier in this call
    elseif c.pi == '' then
      taken[c.id] = true
      chosen[#chosen + 1] = {c.id}
      count = count + 1
    elseif locking_pi[c.pi] or redis.call('HEXISTS', K.pilocks, c.pi) == 1 then
      parked = parked + 1  -- stays in pijobs, and in parked, until the instance is released
      park[#park + 1] = 0
      park[#park + 1] = c.pi .. '|' .. c.key .. '|' .. c.t
    else
      local batch = take_instance_batch(c.pi, math.min(xcap, n - count), taken, unready)
      if #batch > 0 then
        locking_pi[c.pi] = true
        chosen[#chosen + 1] = batch
        count = count + #batch
      end
      if not taken[c.id] then
        if #batch > 0 then
          -- its instance is locked now, and it did not fit into the batch
          parked = parked + 1
          park[#park + 1] = 0
          park[#park + 1] = c.pi .. '|' .. c.key .. '|' .. c.t
        else
          keep[#keep + 1] = 0
          keep[#keep + 1] = c.m
        end
      end
    end
  end
  for t, first in pairs(first_of) do
    redis.call('ZREMRANGEBYLEX', K.ready, '[' .. first, '[' .. last_of[t])
  end
  if #cands < wanted and parked == parked_before then break end
  if #cands == 0 then break end
end
-- After the range removals, which took most of them out already (a miss costs little).
if #unready > 0 then call_chunked('ZREM', K.ready, unready) end
if #park > 0 then call_chunked('ZADD', K.parked, park) end
if #keep > 0 then call_chunked('ZADD', K.ready, keep) end

-- 2. Lock every chosen job with a handful of bulk commands.
local ids = {}
for _, batch in ipairs(chosen) do
  for _, id in ipairs(batch) do ids[#ids + 1] = id end
end
local batches = {}
if #ids > 0 then
  local expires = now + lock_ms
  local expires_s = num(expires)
  local records = read_chunked('HMGET', K.jobs, ids)
  local payloads = read_chunked('HMGET', K.payloads, ids)
  local record_of, payload_of = {}, {}
  local hset, zadd = {}, {}
  local pi_locks = {}
  for i, id in ipairs(ids) do
    local j = decode_job(records[i])
    if j then
      if locking_pi[j.pi] and j.x == '1' then pi_locks[j.pi] = (pi_locks[j.pi] or 0) + 1 end
      j.o = owner
      j.e = expires_s
      j.v = j.v + 1
      local rec = encode_job(j)
      record_of[id] = rec
      payload_of[id] = payloads[i]
      hset[#hset + 1] = id
      hset[#hset + 1] = rec
      zadd[#zadd + 1] = id
    end
  end
  -- Every lock has the same expiry, so `locked` orders them by id. Added in descending
  -- order, each lands first; in a small (listpack) set that spares a scan per insert.
  table.sort(zadd, function(a, b) return a > b end)
  for i = #zadd, 1, -1 do
    zadd[2 * i] = zadd[i]
    zadd[2 * i - 1] = expires
  end
  if #hset > 0 then
    call_chunked('HSET', K.jobs, hset)
    call_chunked('ZADD', K.locked, zadd)
  end
  for pi, k in pairs(pi_locks) do redis.call('HINCRBY', K.pilocks, pi, k) end
  for _, batch in ipairs(chosen) do
    local flat = {}
    for _, id in ipairs(batch) do
      if record_of[id] then
        flat[#flat + 1] = id
        flat[#flat + 1] = record_of[id]
        flat[#flat + 1] = payload_of[id]
      end
    end
    if #flat > 0 then batches[#batches + 1] = flat end
  end
end

local next_due = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
return {now, next_due[2] and tonumber(next_due[2]) or -1, reclaimed, parked, batches}
