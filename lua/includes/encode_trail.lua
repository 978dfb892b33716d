-- @include num
-- Writes the result meta of job `id` (inverse of decode_trail).
local function encode_trail(id, t)
  redis.call('HSET', K.results, id, table.concat({t.st, t.t, t.pi, t.p, t.d, t.enq, t.start,
    t.last, t.fin, num(t.n), t.exp}, '|'))
end
