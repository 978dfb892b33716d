-- ARGV[i] as '0' or '1', or the script stops with a REXEC:BAD_ARGUMENT error.
local function arg_flag(i)
  if ARGV[i] ~= '0' and ARGV[i] ~= '1' then
    error('REXEC:BAD_ARGUMENT ARGV[' .. i .. '] = ' .. tostring(ARGV[i]) .. ', expected 0 or 1', 0)
  end
  return ARGV[i]
end
