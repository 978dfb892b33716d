-- An integral number as a decimal string (tostring would switch to exponents).
-- Memoized per call: jobs of one call mostly share their numbers (due time, expiry,
-- retries), and formatting a double is the costliest thing these scripts do per job.
local num_memo = {}
local function num(n)
  local s = num_memo[n]
  if not s then
    s = string.format('%.0f', n)
    num_memo[n] = s
  end
  return s
end
