-- ARGV[i] as an integer within [lo, hi], or the script stops with a REXEC:BAD_ARGUMENT
-- error. Scripts check their arguments before their first write: Redis does not undo
-- what a failing script already wrote.
local function arg_int(i, lo, hi)
  local n = tonumber(ARGV[i])
  if not n or n ~= math.floor(n) or n < lo or n > hi then
    error('REXEC:BAD_ARGUMENT ARGV[' .. i .. '] = ' .. tostring(ARGV[i]), 0)
  end
  return n
end
