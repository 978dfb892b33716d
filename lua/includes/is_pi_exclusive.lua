-- Exclusivity only matters for jobs that belong to a process instance.
local function is_pi_exclusive(j)
  return j.x == '1' and j.pi ~= ''
end
