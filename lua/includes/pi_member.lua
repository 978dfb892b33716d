-- @include job_key
-- Member of pijobs: "pi|key|type", so one process instance's jobs are a lex range.
local function pi_member(id, j)
  return j.pi .. '|' .. job_key(id, j) .. '|' .. j.t
end
