-- Record string -> table {t, p, d, r, x, pi, v, o, e, s}; nil when absent.
local function decode_job(raw)
  if not raw then return nil end
  local t, p, d, r, x, pi, v, o, e, s =
    string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  if not t then return nil end
  return {t = t, p = p, d = tonumber(d), r = tonumber(r), x = x, pi = pi,
          v = tonumber(v), o = o, e = e, s = s}
end
