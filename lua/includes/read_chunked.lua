-- The reply of redis.call(cmd, key, args...) for a read command that answers one value
-- per argument (HMGET, SMISMEMBER), for a list of any length: in slices that stay
-- within Lua's stack limit for unpack, the values in the order of `args`.
local function read_chunked(cmd, key, args)
  local values = {}
  for i = 1, #args, 4000 do
    local part = redis.call(cmd, key, unpack(args, i, math.min(i + 3999, #args)))
    for k = 1, #part do values[i + k - 1] = part[k] end
  end
  return values
end
