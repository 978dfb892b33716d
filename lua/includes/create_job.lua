-- @include num
-- @include encode_job
-- @include place_job
-- @include resolve_pk
-- @include due_from_spec
-- @include index_instance_job
-- Creates one job from its creation fields {type, pk, due, retries, exclusive, pi,
-- payload} (as enqueue takes them). Returns its id and the table of its record.
local function create_job(f, now)
  local id = num(redis.call('INCR', K.seq))
  local j = {t = f[1], p = resolve_pk(f[1], f[2], f[6]), d = due_from_spec(f[3], now),
             r = tonumber(f[4]), x = f[5], pi = f[6], v = 0, o = '', e = '', s = '0'}
  redis.call('SADD', K.types, j.t)
  redis.call('HSET', K.jobs, id, encode_job(j))
  if f[7] ~= '' then redis.call('HSET', K.payloads, id, f[7]) end
  index_instance_job(id, j)
  return id, j
end
