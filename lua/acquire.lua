--[[ acquire: the whole acquisition in one atomic call (SPEC §2).
Promotes due jobs, reclaims expired locks, then locks up to n batches in order
(priority desc, due asc, id asc): a plain job is a batch of one; an exclusive job of a
process instance comes with the instance's other ready exclusive jobs (up to the cap),
and locks the instance. Exclusive jobs met while their instance is locked are parked
(moved out of the ready queue until the instance is released), so they are passed over
once, not on every call.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] owner; [2] n; [3] lock_ms; [4] lowest priority key allowed ('' = none: highest
priority); [5] highest priority key allowed ('' = none); [6] exclusive batch cap;
[7] promote cap; [8] reclaim cap; [9..] job types to take (none = all active types)
Reply: {now, next due ms or -1, reclaimed, parked, batches}; a batch is a flat list
{id, record, payload or nil, id, record, payload or nil, ...}
]]
-- @include keys
-- @include now_ms
-- @include decode_job
-- @include encode_job
-- @include lock_job
-- @include promote_due
-- @include reclaim_expired
-- @include active_types
-- @include next_candidates
-- @include key_in_range

local owner, n, lock_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lo, hi, xcap = ARGV[4], ARGV[5], tonumber(ARGV[6])
local now = now_ms()
promote_due(now, tonumber(ARGV[7]))
local reclaimed = reclaim_expired(now, tonumber(ARGV[8]))
local types = active_types({unpack(ARGV, 9)})
local allowed = {}
for _, t in ipairs(types) do allowed[t] = true end
local expires = now + lock_ms
local batches, taken = {}, {}
local parked = 0
local park_cap = 10000

local function take(id, j, batch)
  taken[id] = true
  lock_job(id, j, owner, expires)
  batch[#batch + 1] = id
  batch[#batch + 1] = encode_job(j)
  batch[#batch + 1] = redis.call('HGET', K.payloads, id)
end

while #batches < n and parked < park_cap do
  local wanted = n - #batches
  local cands = next_candidates(types, lo, hi, wanted)
  local parked_before = parked
  for _, c in ipairs(cands) do
    if #batches >= n then break end
    if taken[c.id] then
      -- already locked into an exclusive batch earlier in this call
    elseif c.pi == '' then
      redis.call('ZREM', K.ready, c.m)
      local j = decode_job(redis.call('HGET', K.jobs, c.id))
      if j then
        local batch = {}
        take(c.id, j, batch)
        batches[#batches + 1] = batch
      end
    elseif redis.call('HEXISTS', K.pilocks, c.pi) == 1 then
      redis.call('ZREM', K.ready, c.m)
      parked = parked + 1
    else
      local batch = {}
      local pms = redis.call('ZRANGEBYLEX', K.pijobs, '[' .. c.pi .. '|', '[' .. c.pi .. '|~')
      for _, pm in ipairs(pms) do
        if #batch >= xcap * 3 then break end
        local key, jtype = string.match(pm, '^[^|]*|([^|]*)|([^|]*)$')
        if allowed[jtype] and key_in_range(key, lo, hi) then
          local id = string.sub(key, 30)
          redis.call('ZREM', K.pijobs, pm)
          redis.call('ZREM', K.ready, jtype .. '|' .. key .. '|' .. c.pi)
          local j = decode_job(redis.call('HGET', K.jobs, id))
          if j then take(id, j, batch) end
        end
      end
      if #batch > 0 then
        batches[#batches + 1] = batch
      else
        redis.call('ZREM', K.ready, c.m)
      end
    end
  end
  if #cands < wanted and parked == parked_before then break end
  if #cands == 0 then break end
end

local next_due = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
return {now, next_due[2] and tonumber(next_due[2]) or -1, reclaimed, parked, batches}
