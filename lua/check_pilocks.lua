--[[ check_pilocks: counts the locked exclusive jobs of one process instance for the
invariant checker, in one atomic call, and on request makes pilocks say that number:
the field is set to it, or deleted when it is 0 and then the instance's parked jobs go
back to the ready queue, as release_pi does. Reads every id in the lock index: it runs
only for an instance the checker's scan found suspect.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] wake channel; [2] '1' to repair, '0' to only count; [3] process instance id;
[4..] ids of jobs the caller saw locked as exclusive jobs of that instance (counted too,
in case the lock index misses them)
Reply: {pilocks[pi] as it was, or nil; its locked exclusive jobs; their distinct owners;
1 if pilocks was changed, else 0}
]]
-- @include keys
-- @include num
-- @include arg_flag
-- @include decode_job
-- @include call_chunked

arg_flag(2)
local pi = ARGV[3]
local ids, seen = {}, {}
local function consider(id)
  if not seen[id] then
    seen[id] = true
    ids[#ids + 1] = id
  end
end
for _, id in ipairs(redis.call('ZRANGE', K.locked, 0, -1)) do consider(id) end
for i = 4, #ARGV do consider(ARGV[i]) end

local count, owners, owner_seen = 0, 0, {}
for first = 1, #ids, 1000 do
  local records = redis.call('HMGET', K.jobs, unpack(ids, first, math.min(first + 999, #ids)))
  for _, raw in ipairs(records) do
    local j = decode_job(raw)
    if j and j.o ~= '' and j.x == '1' and j.pi == pi then
      count = count + 1
      if not owner_seen[j.o] then
        owner_seen[j.o] = true
        owners = owners + 1
      end
    end
  end
end

local stored = redis.call('HGET', K.pilocks, pi)
local wanted = count > 0 and num(count) or false
local changed = 0
if ARGV[2] == '1' and stored ~= wanted then
  changed = 1
  if wanted then
    redis.call('HSET', K.pilocks, pi, wanted)
  else
    -- Every ready exclusive job of the instance goes back to ready (whether it was
    -- marked parked or not), as release_pi does for the parked ones.
    redis.call('HDEL', K.pilocks, pi)
    local first, last = '[' .. pi .. '|', '[' .. pi .. '|~'
    local members = redis.call('ZRANGEBYLEX', K.pijobs, first, last)
    local ready = {}
    for _, pm in ipairs(members) do
      local key, jtype = string.match(pm, '^[^|]*|([^|]*)|([^|]*)$')
      if key then
        ready[#ready + 1] = 0
        ready[#ready + 1] = jtype .. '|' .. key .. '|' .. pi
      end
    end
    redis.call('ZREMRANGEBYLEX', K.parked, first, last)
    if #ready > 0 then
      call_chunked('ZADD', K.ready, ready)
      redis.call('PUBLISH', ARGV[1], '1')
    end
  end
end
return {stored or false, count, owners, changed}
