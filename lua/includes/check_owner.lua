-- @include decode_job
-- Reads job `id` and checks it is locked by `owner` at revision `rev`.
-- Returns the job table, or nil and a status: 1 = no such job, 2 = lock lost.
local function check_owner(id, owner, rev)
  local j = decode_job(redis.call('HGET', K.jobs, id))
  if not j then return nil, 1 end
  if j.o ~= owner or j.v ~= tonumber(rev) then return nil, 2 end
  return j, 0
end
