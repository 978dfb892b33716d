-- @include num
-- Removes kept results whose time is up, and the earliest-expiring ones beyond the
-- namespace's cap (settings "result_cap", default 100000): at most 1000 per call, so a
-- call stays short; every write of a result calls it, so the excess goes soon.
local function trim_results(now)
  local cap = tonumber(redis.call('HGET', K.settings, 'result_cap')) or 100000
  local gone = redis.call('ZRANGEBYSCORE', K.result_expiry, '-inf', num(now), 'LIMIT', 0, 1000)
  local over = redis.call('ZCARD', K.result_expiry) - #gone - cap
  if over > 0 then
    local more = redis.call('ZRANGE', K.result_expiry, #gone, #gone + math.min(over, 1000 - #gone) - 1)
    for _, id in ipairs(more) do gone[#gone + 1] = id end
  end
  for _, id in ipairs(gone) do
    redis.call('ZREM', K.result_expiry, id)
    redis.call('HDEL', K.results, id, id .. '|v', id .. '|e', id .. '|w')
  end
end
