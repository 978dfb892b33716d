-- The sort key of a candidate (priority key, due hex, id-length letter, id) as numbers,
-- compared without Lua's string < (which follows the server's locale).
local function sort_key(key)
  return {tonumber(string.sub(key, 1, 8), 16), tonumber(string.sub(key, 9, 16), 16),
          tonumber(string.sub(key, 17, 28), 16), string.byte(key, 29),
          tonumber(string.sub(key, 30))}
end
