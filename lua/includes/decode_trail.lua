-- @include num
-- The result meta of job `id` (results hash, field "<id>"): a table {st = status ('' while
-- the job lives, else completed / failed / deleted), t, pi, p, d, enq, start, last, fin,
-- n = attempts, exp} with '' for what is unknown; a fresh one from the job `j` when there
-- is none (rexec/handles.py parses the same record).
local function decode_trail(id, j)
  local raw = redis.call('HGET', K.results, id)
  if raw then
    local f = {}
    for v in string.gmatch(raw .. '|', '([^|]*)|') do f[#f + 1] = v end
    if #f == 11 then
      return {st = f[1], t = f[2], pi = f[3], p = f[4], d = f[5], enq = f[6], start = f[7],
              last = f[8], fin = f[9], n = tonumber(f[10]) or 0, exp = f[11]}
    end
  end
  return {st = '', t = j.t, pi = j.pi, p = j.p, d = num(j.d), enq = '', start = '', last = '',
          fin = '', n = 0, exp = ''}
end
