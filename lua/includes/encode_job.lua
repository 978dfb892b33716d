-- @include num
-- Table -> record string (inverse of decode_job).
local function encode_job(j)
  return j.t .. '|' .. j.p .. '|' .. num(j.d) .. '|' .. num(j.r) .. '|' .. j.x .. '|' ..
    j.pi .. '|' .. num(j.v) .. '|' .. j.o .. '|' .. j.e .. '|' .. j.s
end
