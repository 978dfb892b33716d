-- An integral number as a decimal string (tostring would switch to exponents).
local function num(n)
  return string.format('%.0f', n)
end
