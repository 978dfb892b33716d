-- Files a job under its process instance (none: nothing), so an instance's jobs are
-- read by a lex range instead of a scan.
local function index_instance_job(id, j)
  if j.pi ~= '' then redis.call('ZADD', K.instance_jobs, 0, j.pi .. '|' .. id) end
end
