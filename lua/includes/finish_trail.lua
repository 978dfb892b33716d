-- @include num
-- @include definition_of
-- @include decode_trail
-- @include encode_trail
-- @include drop_trail
-- A job of a type that keeps results has left: its meta gets its final status
-- (completed, failed or deleted) and end time, `value` (msgpack bytes of the handler's
-- return value, '' = none) is stored, and the whole entry expires after the type's
-- keep time (result_expiry; trim_results removes it). Returns true when it was kept;
-- a type that keeps no results (any more) leaves nothing (drop_trail). `t` is the meta
-- when the caller has it already (note_attempt's), else it is read.
local function finish_trail(id, j, now, status, value, t)
  local def = definition_of(j.t)
  if not def or def.keep <= 0 then
    drop_trail(id)
    return false
  end
  t = t or decode_trail(id, j)
  t.st, t.fin, t.exp = status, num(now), num(now + def.keep)
  encode_trail(id, t)
  if value and value ~= '' then redis.call('HSET', K.results, id .. '|v', value) end
  redis.call('ZADD', K.result_expiry, now + def.keep, id)
  return true
end
