-- Checks that ARGV[first..] is a list of pairs (job id, revision), or stops the script
-- with a REXEC:BAD_ARGUMENT error before it writes anything.
local function arg_pairs(first)
  if (#ARGV - first + 1) % 2 ~= 0 then
    error('REXEC:BAD_ARGUMENT expected pairs of job id and revision from ARGV[' .. first .. ']', 0)
  end
end
