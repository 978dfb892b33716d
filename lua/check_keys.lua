--[[ check_keys: checks the unique-key index against the job records, atomically per
entry, and with ARGV[1] = '1' repairs what it finds.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] '1' to repair, '0' to only report; then pairs: 'u' and a unique key (does the job
it names exist, and does its job_keys entry name the key back?), or 'j' and a job id (a
job_keys entry: does its job exist?)
Repairs: an entry naming a gone job is removed (its key is free again), and so is a key
held by an incident (incidents free their keys); a key whose job lacks its job_keys
entry gets it back.
Reply: flat pairs of what was wrong: 'stale-key' and the key, 'incident-key' and the key,
'unpaired' and the key, 'stale-job' and the job id
]]
-- @include keys
-- @include decode_job

local repair = ARGV[1] == '1'
local found = {}
for i = 2, #ARGV - 1, 2 do
  local what, value = ARGV[i], ARGV[i + 1]
  if what == 'u' then
    local id = redis.call('HGET', K.unique_keys, value)
    local j = id and decode_job(redis.call('HGET', K.jobs, id))
    if id and not j then
      found[#found + 1] = 'stale-key'
      found[#found + 1] = value
      if repair then redis.call('HDEL', K.unique_keys, value) end
    elseif j and j.r <= 0 and j.o == '' then
      found[#found + 1] = 'incident-key'
      found[#found + 1] = value
      if repair then redis.call('HDEL', K.unique_keys, value) end
    elseif id and redis.call('HGET', K.job_keys, id) ~= value then
      found[#found + 1] = 'unpaired'
      found[#found + 1] = value
      if repair then redis.call('HSET', K.job_keys, id, value) end
    end
  elseif what == 'j' then
    local key = redis.call('HGET', K.job_keys, value)
    if key and redis.call('HEXISTS', K.jobs, value) == 0 then
      found[#found + 1] = 'stale-job'
      found[#found + 1] = value
      if repair then
        redis.call('HDEL', K.job_keys, value)
        if redis.call('HGET', K.unique_keys, key) == value then
          redis.call('HDEL', K.unique_keys, key)
        end
      end
    end
  else
    return redis.error_reply('REXEC:BAD_ARGUMENT check_keys takes u or j, got ' .. what)
  end
end
return found
