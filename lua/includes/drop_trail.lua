-- Removes what job `id` left in `results` while its type kept results, when it leaves
-- after its type stopped keeping them (a redeploy without keep_result): nothing would
-- expire it. A namespace that keeps no results pays one HLEN per call for this.
local trail_memo = {}
local function drop_trail(id)
  if trail_memo.used == nil then trail_memo.used = redis.call('HLEN', K.results) > 0 end
  if trail_memo.used then redis.call('HDEL', K.results, id, id .. '|v', id .. '|e', id .. '|w') end
end
