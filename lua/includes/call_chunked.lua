-- redis.call(cmd, key, args...) for a long argument list, in slices that stay within
-- Lua's stack limit for unpack (`step` arguments per call, kept even for pairs).
local function call_chunked(cmd, key, args, step)
  step = step or 4000
  for i = 1, #args, step do
    redis.call(cmd, key, unpack(args, i, math.min(i + step - 1, #args)))
  end
end
