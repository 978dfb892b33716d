-- @include key_cmp
-- Notes that a job of `jtype` with priority key `pk` became acquirable (or, from
-- enqueue, newly scheduled) in this call; wake_message turns the notes into the
-- wake-up message. Keeps the highest priority per type.
local wake_best = {}
local function wake_note(jtype, pk)
  local best = wake_best[jtype]
  if not best or key_cmp(pk, best) < 0 then wake_best[jtype] = pk end
end
