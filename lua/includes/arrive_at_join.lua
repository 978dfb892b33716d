-- @include create_job
-- Job `id` (a branch of a fork, if it is one) has completed: counts its arrival at
-- its join, and on the last arrival creates the join job, exactly once. Returns the
-- join job's placement, or nil.
local function arrive_at_join(id, now)
  local jid = redis.call('HGET', K.branches, id)
  if not jid then return nil end
  redis.call('HDEL', K.branches, id)
  if redis.call('HINCRBY', K.joins, jid .. '|n', -1) > 0 then return nil end
  local f = redis.call('HMGET', K.joins, jid .. '|f', jid .. '|pl')
  redis.call('HDEL', K.joins, jid .. '|n', jid .. '|f', jid .. '|pl')
  local t, pk, due, r, x, pi = string.match(f[1], '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  local join_id, j = create_job({t, pk, due, r, x, pi, f[2] or ''}, now)
  return place_job(join_id, j, now)
end
