-- @include num
-- @include definition_of
-- @include encode_trail
-- A new job of a type that keeps results starts its result meta with its creation time.
local function start_trail(id, j, now)
  local def = definition_of(j.t)
  if not def or def.keep <= 0 then return end
  encode_trail(id, {st = '', t = j.t, pi = j.pi, p = j.p, d = num(j.d), enq = num(now),
    start = '', last = '', fin = '', n = 0, exp = ''})
end
