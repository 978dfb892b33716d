-- @include sort_key
-- @include key_less
-- The best `limit` acquirable jobs over the given types, in acquisition order
-- (priority key, due, id), due at `now`. Two sources per type, each already in that
-- order: the ready queue (every member due), and `future`, the scheduled jobs in the
-- same lex order, where a due job is found however many due jobs wait to be promoted.
-- Within a (type, priority) group `future` is ordered by due time, so a group whose
-- next member is not due yet is skipped with one ZRANGEBYLEX to the next group, at most
-- `skips` times per type (groups of higher priority that are all in the future).
-- The lists are merged comparing only their heads. O(types * (skips + 1) * (log N + limit)).
-- `lo`/`hi` bound the priority key ('' = unbounded). A candidate from `future` has f = true.
local function next_candidates(types, lo, hi, limit, now, skips)
  local lists = {}
  for _, t in ipairs(types) do
    local first = lo ~= '' and ('[' .. t .. '|' .. lo) or ('[' .. t .. '|')
    local last = hi ~= '' and ('[' .. t .. '|' .. hi .. '~') or ('[' .. t .. '|~')
    local ms = redis.call('ZRANGEBYLEX', K.ready, first, last, 'LIMIT', 0, limit)
    if #ms > 0 then lists[#lists + 1] = {ms = ms, i = 1, f = false} end
    if now then
      local due, skipped = {}, 0
      while #due < limit do
        local got = redis.call('ZRANGEBYLEX', K.future, first, last, 'LIMIT', 0, limit - #due)
        local jumped = false
        for _, m in ipairs(got) do
          local key = string.match(m, '^[^|]*|([^|]*)')
          if tonumber(string.sub(key, 17, 28), 16) <= now then
            due[#due + 1] = m
          else
            -- the rest of this priority group is due later still: on to the next group
            first = '[' .. t .. '|' .. string.sub(key, 1, 16) .. '~'
            jumped = true
            break
          end
        end
        skipped = skipped + 1
        if not jumped or skipped > skips then break end
      end
      if #due > 0 then lists[#lists + 1] = {ms = due, i = 1, f = true} end
    end
  end
  local cands = {}
  local function take(list)
    local m = list.ms[list.i]
    list.i = list.i + 1
    local jtype, key, pi = string.match(m, '^([^|]*)|([^|]*)|?(.*)$')
    cands[#cands + 1] = {m = m, t = jtype, key = key, id = string.sub(key, 30), pi = pi, f = list.f}
  end
  if #lists == 1 then
    for _ = 1, #lists[1].ms do take(lists[1]) end
    return cands
  end
  for _, list in ipairs(lists) do list.head = sort_key(string.match(list.ms[1], '^[^|]*|([^|]*)')) end
  while #cands < limit and #lists > 0 do
    local best = 1
    for k = 2, #lists do
      if key_less(lists[k].head, lists[best].head) then best = k end
    end
    local list = lists[best]
    take(list)
    if list.i > #list.ms then
      table.remove(lists, best)
    else
      list.head = sort_key(string.match(list.ms[list.i], '^[^|]*|([^|]*)'))
    end
  end
  return cands
end
