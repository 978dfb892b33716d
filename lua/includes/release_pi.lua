-- @include wake_note
-- One exclusive job of process instance `pi` is no longer locked. When it was the last,
-- the instance is free: its parked jobs go back to the ready queue, in their order.
local function release_pi(pi)
  local left = redis.call('HINCRBY', K.pilocks, pi, -1)
  if left > 0 then return false end
  redis.call('HDEL', K.pilocks, pi)
  local parked = redis.call('ZRANGEBYLEX', K.pijobs, '[' .. pi .. '|', '[' .. pi .. '|~')
  for _, pm in ipairs(parked) do
    local key, jtype = string.match(pm, '^[^|]*|([^|]*)|([^|]*)$')
    redis.call('ZADD', K.ready, 0, jtype .. '|' .. key .. '|' .. pi)
    wake_note(jtype, string.sub(key, 1, 16))
  end
  return #parked > 0
end
