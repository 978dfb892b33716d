-- @include definition_of
-- @include rule_pk
-- What a new job gets from its creation fields and the store (SPEC §4). Fields:
-- pk '' (none), '<pk>' (explicit) or 'd<pk>' (the enqueuing app's own rule result);
-- retries '<n>' (explicit), 'd<n>' (the app's default) or ''; exclusive '1'/'0',
-- 'd1'/'d0' or ''. The stored definition beats the app's defaults; a type whose rule
-- lives in Python needs the app's result. Returns pk, retries, exclusive, suspended
-- ('1' for a job of a suspended process instance), or nil and an error reply text;
-- `lenient` falls through a missing Python rule instead (a join created on arrival).
local override_memo = {}
local spi_memo = {}
local function resolve_new(jtype, pk, r, x, pi, lenient)
  local def = definition_of(jtype)
  local p = override_memo[jtype]
  if p == nil then
    p = redis.call('HGET', K.overrides, jtype)
    override_memo[jtype] = p
  end
  if not p and #pk == 16 then p = pk end
  if not p then
    local given = string.match(pk, '^d(%x+)$')
    if not def then
      p = given
    elseif def.rule == 'py' then
      if not given and not lenient then return nil, 'REXEC:RULE_UNAVAILABLE ' .. jtype end
      p = given
    elseif def.rule ~= '' then
      p = rule_pk(def.rule, pi)
    end
  end
  if not p and pi ~= '' then
    local rec = redis.call('HGET', K.pis, pi)
    local pr = rec and string.match(rec, '^[^|]*|(.*)$') or ''
    if #pr == 16 then p = pr elseif pr ~= '' then p = rule_pk(pr, pi) end
  end
  local retries = tonumber(r)
  if not retries then
    retries = def and def.e or tonumber(string.match(r, '^d(%d+)$')) or 3
  end
  if x ~= '0' and x ~= '1' then x = def and def.x or string.match(x, '^d([01])$') or '1' end
  local s = '0'
  if pi ~= '' then
    if spi_memo[pi] == nil then spi_memo[pi] = redis.call('SISMEMBER', K.suspended_pis, pi) == 1 end
    if spi_memo[pi] then s = '1' end
  end
  return p or '7fffffffffffffff', retries, x, s
end
