-- @include key_cmp
-- Acquisition order of two candidates by their sort keys (priority key, due hex,
-- id-length letter, id), compared as numbers: Lua's string < follows the server's
-- locale, the ready queue's lex order does not.
local function key_less(a, b)
  local c = key_cmp(a.key, b.key)
  if c ~= 0 then return c < 0 end
  local da, db = tonumber(string.sub(a.key, 17, 28), 16), tonumber(string.sub(b.key, 17, 28), 16)
  if da ~= db then return da < db end
  local la, lb = string.byte(a.key, 29), string.byte(b.key, 29)
  if la ~= lb then return la < lb end
  return tonumber(string.sub(a.key, 30)) < tonumber(string.sub(b.key, 30))
end
