-- Compares the priority keys at the front of a and b: -1, 0 or 1. Compares 32-bit
-- halves as numbers, exact in Lua's doubles and free of the server's locale (which
-- Lua's string < follows).
local function key_cmp(a, b)
  local a1, b1 = tonumber(string.sub(a, 1, 8), 16), tonumber(string.sub(b, 1, 8), 16)
  if a1 ~= b1 then return a1 < b1 and -1 or 1 end
  local a2, b2 = tonumber(string.sub(a, 9, 16), 16), tonumber(string.sub(b, 9, 16), 16)
  if a2 ~= b2 then return a2 < b2 and -1 or 1 end
  return 0
end
