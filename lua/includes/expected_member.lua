-- @include ready_member
-- @include scheduled_member
-- @include pi_member
-- @include is_pi_exclusive
-- The member job `id` with record `j` has in `index` when it is filed there, or false.
local function expected_member(index, id, j)
  if index == 'locked' or index == 'incidents' then return id end
  if index == 'pijobs' or index == 'parked' then
    if is_pi_exclusive(j) then return pi_member(id, j) end
    return false
  end
  if index == 'scheduled' then return scheduled_member(id, j) end
  return ready_member(id, j)
end
