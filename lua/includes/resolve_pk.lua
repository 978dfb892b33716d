-- The priority key a new job gets (SPEC §4): the job definition's overriding priority,
-- else the one given (explicit or the type's rule, resolved by the client), else its
-- process instance's, else 0.
local function resolve_pk(jtype, pk, pi)
  local override = redis.call('HGET', K.overrides, jtype)
  if override then return override end
  if pk ~= '' then return pk end
  if pi ~= '' then
    local rec = redis.call('HGET', K.pis, pi)
    local pi_pk = rec and string.match(rec, '^[^|]*|(.*)$') or ''
    if pi_pk ~= '' then return pi_pk end
  end
  return '7fffffffffffffff'
end
