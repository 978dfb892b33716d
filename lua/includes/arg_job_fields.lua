-- Checks the creation fields of one job at ARGV[base..base+6] (type, priority key, due,
-- retries, exclusive, process instance, payload; as enqueue takes them, with the 'd'
-- forms of an app's defaults), or stops the
-- script with a REXEC:BAD_ARGUMENT error: scripts check everything before their first
-- write.
local function arg_job_fields(base)
  local jtype, pk, due, x, pi = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 4], ARGV[base + 5]
  local function bad(what, value)
    error('REXEC:BAD_ARGUMENT ' .. what .. ' ' .. tostring(value) .. ' at ARGV[' .. base .. ']', 0)
  end
  if ARGV[base + 6] == nil then bad('missing job fields', '') end
  if jtype == '' or string.find(jtype, '|', 1, true) then bad('job type', jtype) end
  if pk ~= '' and not string.match(pk, '^d?%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$') then bad('priority key', pk) end
  if due ~= '' and not string.match(due, '^%+?%d+$') then bad('due', due) end
  local r = ARGV[base + 3]
  local rn = tonumber(string.match(r, '^d?(%d+)$'))
  if r ~= '' and not (rn and rn >= 1 and rn <= 1000000) then bad('retries', r) end
  if x ~= '' and not string.match(x, '^d?[01]$') then bad('exclusive', x) end
  if string.find(pi, '|', 1, true) then bad('process instance', pi) end
end
