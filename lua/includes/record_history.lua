-- @include num
-- Appends a finished job to the history stream (capped at `max_len` entries,
-- and entries older than `ttl` ms trimmed by trim_history) when the history is on.
local function record_history(id, j, outcome, max_len)
  if max_len <= 0 then return end
  redis.call('XADD', K.history, 'MAXLEN', max_len, '*', 'id', id, 'type', j.t,
    'priority_key', j.p, 'pi', j.pi, 'due', num(j.d), 'outcome', outcome)
end
