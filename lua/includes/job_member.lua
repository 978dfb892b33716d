-- The sort key of a job: priority key, due time (12 hex digits), then the id with its
-- length as a letter in front so that ids compare by number (FIFO).
local function job_key(id, j)
  return j.p .. string.format('%012x', j.d) .. string.char(96 + #id) .. id
end
