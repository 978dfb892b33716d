-- @include release_key
-- What every job that leaves (completed, deleted) takes with it besides its record:
-- its entry in the process instance's index, its unique key, and a count of its
-- outcome by type.
local function forget_job(id, j, outcome)
  if j.pi ~= '' then redis.call('ZREM', K.instance_jobs, j.pi .. '|' .. id) end
  release_key(id)
  redis.call('HINCRBY', K.counters, outcome .. '|' .. j.t, 1)
end
