-- @include key_cmp
-- Whether the priority key at the front of `key` lies within [lo, hi] ('' = unbounded).
local function key_in_range(key, lo, hi)
  return (lo == '' or key_cmp(key, lo) >= 0) and (hi == '' or key_cmp(key, hi) <= 0)
end
