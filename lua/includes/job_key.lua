-- The sort key of a job: priority key, due time (12 hex digits), then the id with its
-- length as a letter in front so that ids compare by number (FIFO). The hex of a due
-- time is memoized per call (see num).
local due_hex_memo = {}
local function job_key(id, j)
  local due = due_hex_memo[j.d]
  if not due then
    due = string.format('%012x', j.d)
    due_hex_memo[j.d] = due
  end
  return j.p .. due .. string.char(96 + #id) .. id
end
