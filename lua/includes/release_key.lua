-- Frees the unique key job `id` holds, if any (a job that leaves, however it leaves).
-- Most namespaces use no keys: one HLEN per call tells, then nothing is read per job.
local keys_memo = {}
local function release_key(id)
  if keys_memo.used == nil then keys_memo.used = redis.call('HLEN', K.job_keys) > 0 end
  if not keys_memo.used then return end
  local key = redis.call('HGET', K.job_keys, id)
  if key then
    redis.call('HDEL', K.job_keys, id)
    if redis.call('HGET', K.unique_keys, key) == id then redis.call('HDEL', K.unique_keys, key) end
  end
end
