-- The wait before the next execution after a failure that leaves `left` retries, from
-- a stored definition's retry cycle (as RetryCycle.delay_ms in rexec/retry.py).
local function retry_wait(def, left)
  local iv = {}
  for ms in string.gmatch(def.iv, '%d+') do iv[#iv + 1] = tonumber(ms) end
  local failures = math.max(1, def.e - left)
  return iv[math.min(failures, #iv)]
end
