-- A due time from its spec: '' = now, '+ms' = after a delay, 'ms' = at that time.
local function due_from_spec(due, now)
  if due == '' then return now end
  if string.sub(due, 1, 1) == '+' then return now + tonumber(string.sub(due, 2)) end
  return tonumber(due)
end
