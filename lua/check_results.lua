--[[ check_results: checks kept results against the jobs, atomically per job, and with
ARGV[1] = '1' repairs what it finds.
KEYS: the namespace keys (includes/keys.lua)
ARGV[1] '1' to repair, '0' to only report; then job ids (fields of `results`)
A result meta of a job that lives has an empty status; one of a job that left has a
final status and an entry in result_expiry (or nothing would ever remove it).
Repairs: the result of a job that is gone without a final status is removed; a final
result without an expiry gets one now (the next trim removes it).
Reply: flat pairs of what was wrong: 'orphan' or 'unexpiring', and the job id
]]
-- @include keys
-- @include now_ms

local repair = ARGV[1] == '1'
local found = {}
local now
for i = 2, #ARGV do
  local id = ARGV[i]
  local meta = redis.call('HGET', K.results, id)
  if meta then
    local status = string.match(meta, '^([^|]*)|')
    local alive = redis.call('HEXISTS', K.jobs, id) == 1
    if (status == '' or not status) and not alive then
      found[#found + 1] = 'orphan'
      found[#found + 1] = id
      if repair then redis.call('HDEL', K.results, id, id .. '|v', id .. '|e', id .. '|w') end
    elseif status and status ~= '' and not redis.call('ZSCORE', K.result_expiry, id) then
      found[#found + 1] = 'unexpiring'
      found[#found + 1] = id
      if repair then
        now = now or now_ms()
        redis.call('ZADD', K.result_expiry, now, id)
      end
    end
  end
end
return found
