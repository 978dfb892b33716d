--[[ check_instances: checks the process-instance index (instance_jobs) against the job
records, and with ARGV[1] = '1' repairs it: adds the missing entries (jobs created before
the index existed), removes the stale ones. Atomic per call, so a report is never a race
with a worker.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] '1' to repair, '0' to report only; then pairs: 'j' and a job id (is the job, if
it belongs to an instance, in the index?) or 'm' and a member of instance_jobs (does it
name an existing job of that instance?)
Reply: flat pairs: 'missing', job id | 'stale', member
]]
-- @include keys
-- @include decode_job

local repair = ARGV[1] == '1'
local out = {}
for i = 2, #ARGV - 1, 2 do
  local what, value = ARGV[i], ARGV[i + 1]
  if what == 'j' then
    local j = decode_job(redis.call('HGET', K.jobs, value))
    if j and j.pi ~= '' then
      local member = j.pi .. '|' .. value
      if not redis.call('ZSCORE', K.instance_jobs, member) then
        out[#out + 1] = 'missing'
        out[#out + 1] = value
        if repair then redis.call('ZADD', K.instance_jobs, 0, member) end
      end
    end
  elseif what == 'm' then
    local pi, id = string.match(value, '^(.*)|(%d+)$')
    local j = id and decode_job(redis.call('HGET', K.jobs, id))
    -- a member read earlier may have left with its job since (a worker completed it):
    -- only one still in the index is stale
    if (not j or j.pi ~= pi) and redis.call('ZSCORE', K.instance_jobs, value) then
      out[#out + 1] = 'stale'
      out[#out + 1] = value
      if repair then redis.call('ZREM', K.instance_jobs, value) end
    end
  end
end
return out
