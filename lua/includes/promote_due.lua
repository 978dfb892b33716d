-- @include call_chunked
-- Moves up to `cap` due scheduled jobs into the ready queue (exclusive jobs of a locked
-- process instance into pijobs and parked), with a few bulk commands. Jobs due at the same
-- instant come highest priority first (scheduled_member puts the sort key first), so a
-- burst larger than `cap` is promoted over several calls without ever letting a lower
-- priority job overtake a higher one that was due at the same time.
-- Cost: O(log N + moved).
local function promote_due(now, cap)
  local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', now, 'LIMIT', 0, cap)
  if #due == 0 then return 0 end
  redis.call('ZREMRANGEBYRANK', K.scheduled, 0, #due - 1)
  local ready, pijobs, parked, future = {}, {}, {}, {}
  local held, pis, parsed = {}, {}, {}
  for i, m in ipairs(due) do
    local key, jtype, pi = string.match(m, '^([^|]*)|([^|]*)|?(.*)$')
    parsed[i] = {key, jtype, pi}
    future[i] = pi ~= '' and (jtype .. '|' .. key .. '|' .. pi) or (jtype .. '|' .. key)
    if pi ~= '' then
      pijobs[#pijobs + 1] = 0
      pijobs[#pijobs + 1] = pi .. '|' .. key .. '|' .. jtype
      if held[pi] == nil then
        held[pi] = false
        pis[#pis + 1] = pi
      end
    end
  end
  for i = 1, #pis, 4000 do
    local locks = redis.call('HMGET', K.pilocks, unpack(pis, i, math.min(i + 3999, #pis)))
    for k, count in ipairs(locks) do
      if count then held[pis[i + k - 1]] = true end
    end
  end
  for _, p in ipairs(parsed) do
    local key, jtype, pi = p[1], p[2], p[3]
    if pi == '' then
      ready[#ready + 1] = 0
      ready[#ready + 1] = jtype .. '|' .. key
    elseif not held[pi] then
      ready[#ready + 1] = 0
      ready[#ready + 1] = jtype .. '|' .. key .. '|' .. pi
    else
      parked[#parked + 1] = 0
      parked[#parked + 1] = pi .. '|' .. key .. '|' .. jtype
    end
  end
  call_chunked('ZREM', K.future, future)
  if #pijobs > 0 then call_chunked('ZADD', K.pijobs, pijobs) end
  if #parked > 0 then call_chunked('ZADD', K.parked, parked) end
  if #ready > 0 then call_chunked('ZADD', K.ready, ready) end
  return #due
end
