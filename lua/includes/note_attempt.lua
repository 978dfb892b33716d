-- @include num
-- @include definition_of
-- @include decode_trail
-- @include encode_trail
-- Records an execution of job `j` that ended, for a type that keeps results: one more
-- attempt, when it started (`started` ms, '' = unknown: now), by which worker (`owner`,
-- the last 20 kept), and its error entry `err` ('' = none; "<len>,<len>,<len>:" then the
-- class path, message and traceback, as rexec/handles.py encodes it), stamped with now.
-- Errors beyond 64 KiB drop the oldest first. Returns the meta table, or nil when the
-- type keeps no results; `unsaved` leaves the meta to the caller to write (finish_trail
-- does, for a last attempt).
local function note_attempt(id, j, now, owner, started, err, unsaved)
  local def = definition_of(j.t)
  if not def or def.keep <= 0 then return nil end
  local t = decode_trail(id, j)
  local at = string.match(started, '^%d+$') and started or num(now)
  if t.start == '' then t.start = at end
  t.last = at
  t.n = t.n + 1
  if owner ~= '' then
    local w = redis.call('HGET', K.results, id .. '|w')
    w = w and (w .. '|' .. owner) or owner
    local count = select(2, string.gsub(w, '|', '|')) + 1
    while count > 20 do
      w = string.sub(w, string.find(w, '|', 1, true) + 1)
      count = count - 1
    end
    redis.call('HSET', K.results, id .. '|w', w)
  end
  if err ~= '' then
    local blob = (redis.call('HGET', K.results, id .. '|e') or '') .. num(now) .. ',' .. err
    while #blob > 65536 do
      local head, a, b, c = string.match(blob, '^(%d+,(%d+),(%d+),(%d+):)')
      if not head then break end
      local size = #head + tonumber(a) + tonumber(b) + tonumber(c)
      if size >= #blob then break end
      blob = string.sub(blob, size + 1)
    end
    redis.call('HSET', K.results, id .. '|e', blob)
  end
  if not unsaved then encode_trail(id, t) end
  return t
end
