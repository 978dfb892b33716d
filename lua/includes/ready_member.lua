-- @include job_key
-- Member of ready/scheduled/suspended: "type|key", plus "|pi" for exclusive jobs of a
-- process instance so acquisition sees the instance without reading the record.
local function ready_member(id, j)
  local m = j.t .. '|' .. job_key(id, j)
  if j.x == '1' and j.pi ~= '' then m = m .. '|' .. j.pi end
  return m
end
