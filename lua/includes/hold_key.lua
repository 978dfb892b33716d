-- Keeps the unique key of job `j` (`id`) held while the job can run and free while it is
-- an incident (retries 0): an incident frees its key; resolving it takes the key back,
-- unless another job holds it by then, and then it runs without one.
local function hold_key(id, j)
  local key = redis.call('HGET', K.job_keys, id)
  if not key then return end
  local holder = redis.call('HGET', K.unique_keys, key)
  if j.r <= 0 then
    if holder == id then redis.call('HDEL', K.unique_keys, key) end
  elseif holder ~= id then
    if holder and redis.call('HEXISTS', K.jobs, holder) == 1 then
      redis.call('HDEL', K.job_keys, id)
    else
      redis.call('HSET', K.unique_keys, key, id)
    end
  end
end
