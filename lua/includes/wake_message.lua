-- @include wake_note
-- The wake-up message of this call (rexec/wakeup.py): "type|pk type|pk ...", one
-- entry per type noted by wake_note with its highest priority key; '1' (wake every
-- worker) when nothing was noted.
local function wake_message()
  local parts = {}
  for jtype, pk in pairs(wake_best) do parts[#parts + 1] = jtype .. '|' .. pk end
  if #parts == 0 then return '1' end
  return table.concat(parts, ' ')
end
