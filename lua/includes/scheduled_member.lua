-- @include job_key
-- Member of scheduled (score: due time): "key|type", plus "|pi" for exclusive jobs of a
-- process instance. The key comes first so that jobs due at the same instant are
-- promoted highest priority first (see promote_due).
local function scheduled_member(id, j)
  local m = job_key(id, j) .. '|' .. j.t
  if j.x == '1' and j.pi ~= '' then m = m .. '|' .. j.pi end
  return m
end
