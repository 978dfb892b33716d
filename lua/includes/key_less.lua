-- Whether sort key a (see sort_key) comes before b in acquisition order.
local function key_less(a, b)
  for i = 1, 5 do
    if a[i] ~= b[i] then return a[i] < b[i] end
  end
  return false
end
