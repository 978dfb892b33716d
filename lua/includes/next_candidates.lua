-- @include sort_key
-- @include key_less
-- The best `limit` ready jobs over the given types, in acquisition order (priority
-- key, due, id): each type's lex range is already in order, so they are merged,
-- comparing only the heads. O(types * (log N + limit)).
-- `lo`/`hi` bound the priority key ('' = unbounded).
local function next_candidates(types, lo, hi, limit)
  local lists = {}
  for _, t in ipairs(types) do
    local first = lo ~= '' and ('[' .. t .. '|' .. lo) or ('[' .. t .. '|')
    local last = hi ~= '' and ('[' .. t .. '|' .. hi .. '~') or ('[' .. t .. '|~')
    local ms = redis.call('ZRANGEBYLEX', K.ready, first, last, 'LIMIT', 0, limit)
    if #ms > 0 then lists[#lists + 1] = {ms = ms, i = 1} end
  end
  local cands = {}
  local function take(list)
    local m = list.ms[list.i]
    list.i = list.i + 1
    local jtype, key, pi = string.match(m, '^([^|]*)|([^|]*)|?(.*)$')
    cands[#cands + 1] = {m = m, t = jtype, key = key, id = string.sub(key, 30), pi = pi}
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
