-- @include num
-- @include encode_job
-- @include place_job
-- @include resolve_new
-- @include due_from_spec
-- @include count_new_jobs
-- @include index_instance_job
-- @include start_trail
-- Creates one job from its creation fields {type, pk, due, retries, exclusive, pi,
-- payload} (as enqueue takes them), resolved against the store (resolve_new; callers
-- check a missing Python rule first, so it falls through here). Returns its id and the
-- table of its record.
local function create_job(f, now)
  local id = num(redis.call('INCR', K.seq))
  local pk, r, x, s = resolve_new(f[1], f[2], f[4], f[5], f[6], true)
  local j = {t = f[1], p = pk, d = due_from_spec(f[3], now),
             r = r, x = x, pi = f[6], v = 0, o = '', e = '', s = s}
  count_new_jobs(j.t, 1)
  redis.call('HSET', K.jobs, id, encode_job(j))
  if f[7] ~= '' then redis.call('HSET', K.payloads, id, f[7]) end
  index_instance_job(id, j)
  start_trail(id, j, now)
  return id, j
end
