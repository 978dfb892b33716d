-- Drops history entries older than `ttl` ms (stream ids are their time).
local function trim_history(now, ttl)
  if ttl > 0 then
    redis.call('XTRIM', K.history, 'MINID', string.format('%.0f', now - ttl))
  end
end
