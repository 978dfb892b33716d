-- @include call_chunked
-- @include wake_note
-- `k` (default 1) exclusive jobs of process instance `pi` are no longer locked. When
-- they were the last, the instance is free: its parked jobs (and only those: its other
-- ready jobs never left the ready queue) go back to the ready queue, in their order.
-- Cost: O(log N + parked jobs released), whatever the instance's backlog.
local function release_pi(pi, k)
  local left = redis.call('HINCRBY', K.pilocks, pi, -(k or 1))
  if left > 0 then return false end
  redis.call('HDEL', K.pilocks, pi)
  local first, last = '[' .. pi .. '|', '[' .. pi .. '|~'
  local parked = redis.call('ZRANGEBYLEX', K.parked, first, last)
  if #parked == 0 then return false end
  local ready = {}
  for _, pm in ipairs(parked) do
    local key, jtype = string.match(pm, '^[^|]*|([^|]*)|([^|]*)$')
    if key then
      ready[#ready + 1] = 0
      ready[#ready + 1] = jtype .. '|' .. key .. '|' .. pi
      wake_note(jtype, string.sub(key, 1, 16))
    end
  end
  redis.call('ZREMRANGEBYLEX', K.parked, first, last)
  if #ready > 0 then call_chunked('ZADD', K.ready, ready) end
  return #ready > 0
end
