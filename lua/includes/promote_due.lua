-- @include pi_member
-- Moves up to `cap` scheduled jobs that are due into the ready queue (exclusive jobs of
-- a locked process instance into pijobs only). Cost: O(log N + moved).
local function promote_due(now, cap)
  local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', now, 'LIMIT', 0, cap)
  if #due == 0 then return 0 end
  redis.call('ZREMRANGEBYRANK', K.scheduled, 0, #due - 1)
  local plain = {}
  for _, m in ipairs(due) do
    local jtype, key, pi = string.match(m, '^([^|]*)|([^|]*)|?(.*)$')
    if pi ~= '' then
      redis.call('ZADD', K.pijobs, 0, pi .. '|' .. key .. '|' .. jtype)
      if redis.call('HEXISTS', K.pilocks, pi) == 0 then redis.call('ZADD', K.ready, 0, m) end
    else
      plain[#plain + 1] = 0
      plain[#plain + 1] = m
      if #plain >= 2000 then
        redis.call('ZADD', K.ready, unpack(plain))
        plain = {}
      end
    end
  end
  if #plain > 0 then redis.call('ZADD', K.ready, unpack(plain)) end
  return #due
end
