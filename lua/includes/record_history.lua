-- @include num
-- Appends a finished job to the history stream (capped at `max_len` entries,
-- and entries older than `ttl` ms trimmed by trim_history) when the history is on
-- (`max_len` > 0; -1: append uncapped, the next capped append trims). `err`, if given,
-- is the error of a failed execution (its first 500 bytes).
local function record_history(id, j, outcome, max_len, err)
  if max_len == 0 or max_len < -1 then return end
  local args = {'XADD', K.history}
  if max_len > 0 then args[3], args[4] = 'MAXLEN', max_len end
  for _, v in ipairs({'*', 'id', id, 'type', j.t, 'priority_key', j.p, 'pi', j.pi,
                      'due', num(j.d), 'outcome', outcome}) do
    args[#args + 1] = v
  end
  if err and err ~= '' then
    args[#args + 1] = 'error'
    args[#args + 1] = string.sub(err, 1, 500)
  end
  redis.call(unpack(args))
end
