-- @include key_less
-- The best `limit` ready jobs over the given types, in acquisition order (priority
-- key, due, id): a merge of each type's lex range, so O(types * (log N + limit)).
-- `lo`/`hi` bound the priority key ('' = unbounded).
local function next_candidates(types, lo, hi, limit)
  local cands = {}
  local sources = 0
  for _, t in ipairs(types) do
    local first = lo ~= '' and ('[' .. t .. '|' .. lo) or ('[' .. t .. '|')
    local last = hi ~= '' and ('[' .. t .. '|' .. hi .. '~') or ('[' .. t .. '|~')
    local ms = redis.call('ZRANGEBYLEX', K.ready, first, last, 'LIMIT', 0, limit)
    if #ms > 0 then sources = sources + 1 end
    for _, m in ipairs(ms) do
      local jtype, key, pi = string.match(m, '^([^|]*)|([^|]*)|?(.*)$')
      cands[#cands + 1] = {m = m, t = jtype, key = key, id = string.sub(key, 30), pi = pi}
    end
  end
  if sources > 1 then
    table.sort(cands, key_less)
    while #cands > limit do table.remove(cands) end
  end
  return cands
end
