-- toolgate approvals in Redis. One script, one operation per run (ARGV[1]).
-- Every key shares the hash tag of KEYS[1] (`<prefix>{approvals}:`): a Redis
-- Cluster keeps them in one slot, so that one run can keep the record, the
-- call's binding and the indexes consistent.
--
-- Keys (P = ARGV[2], the tagged prefix):
--   P r:<id>     hash: the approval's fields (expires at expiry + retention)
--   P b:<bkey>   string: the open approval of a call (expires at its expiry)
--   P idx        zset id -> created ms (List, newest first)
--   P purge      zset id -> when the record is forgotten (prunes idx)
--   P open       zset id -> expiry ms, the open approvals (bound, sweep)
--   P g:<grant>  zset id -> expiry ms, the open approvals of a grant (bound)
-- Events are published on P events as "<kind>:<id>".
--
-- Replies: { code, fields... } where fields is the record as HGETALL gives it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, P = ARGV[1], ARGV[2]
local idx, open, purge, chan = P .. 'idx', P .. 'open', P .. 'purge', P .. 'events'

local function load(id)
  local flat = redis.call('HGETALL', P .. 'r:' .. id)
  if #flat == 0 then return nil, flat end
  local r = {}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  return r, flat
end

local function state_of(r)
  if (r.state == 'pending' or r.state == 'approved') and now >= tonumber(r.expires) then
    return 'expired'
  end
  return r.state
end

local function close(id, grant)
  redis.call('ZREM', open, id)
  redis.call('ZREM', P .. 'g:' .. grant, id)
end

local function reply(code, id)
  local _, flat = load(id)
  local out = { code, tostring(now) }
  for i = 1, #flat do out[#out + 1] = flat[i] end
  return out
end

-- Records expiries due (at most 100 a run) and forgets index entries whose
-- record is gone (at most 1000 a run). Returns the ids it expired.
local function sweep()
  local expired = {}
  local ids = redis.call('ZRANGEBYSCORE', open, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(ids) do
    local r = load(id)
    if r and (r.state == 'pending' or r.state == 'approved') then
      redis.call('HSET', P .. 'r:' .. id, 'state', 'expired')
      close(id, r.grant)
      redis.call('PUBLISH', chan, 'expired:' .. id)
      expired[#expired + 1] = id
    else
      redis.call('ZREM', open, id)
    end
  end
  local gone = redis.call('ZRANGEBYSCORE', purge, '-inf', now, 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('ZREM', idx, unpack(gone))
    redis.call('ZREM', purge, unpack(gone))
  end
  return expired
end

if op == 'create' then
  -- ARGV: 3 id, 4 bkey, 5 ttl, 6 max_open, 7 max_per_grant, 8 retention,
  --       9 grant, 10 tool, 11 server, 12 session, 13 digest, 14 args,
  --       15 rule, 16 reason, 17 rev, 18 reqid, 19 max records
  local bkey = P .. 'b:' .. ARGV[4]
  local existing = redis.call('GET', bkey)
  if existing then
    local r = load(existing)
    if r and (state_of(r) == 'pending' or state_of(r) == 'approved') then
      return reply('existing', existing)
    end
  end
  local gkey = P .. 'g:' .. ARGV[9]
  if redis.call('ZCOUNT', open, '(' .. now, '+inf') >= tonumber(ARGV[6]) then
    return { 'full', tostring(now) }
  end
  if redis.call('ZCOUNT', gkey, '(' .. now, '+inf') >= tonumber(ARGV[7]) then
    return { 'grant_full', tostring(now) }
  end
  -- At most ARGV[19] records held: the oldest closed ones are forgotten
  -- first (open ones are bounded by ARGV[6], far below).
  if redis.call('ZCARD', idx) >= tonumber(ARGV[19]) then
    for _, old in ipairs(redis.call('ZRANGE', idx, 0, 15)) do
      local r = load(old)
      if not r or (state_of(r) ~= 'pending' and state_of(r) ~= 'approved') then
        redis.call('DEL', P .. 'r:' .. old)
        redis.call('ZREM', idx, old)
        redis.call('ZREM', purge, old)
      end
    end
  end
  local id = ARGV[3]
  local expires = now + tonumber(ARGV[5])
  local retention = tonumber(ARGV[8])
  local rkey = P .. 'r:' .. id
  redis.call('HSET', rkey, 'id', id, 'state', 'pending', 'grant', ARGV[9], 'tool', ARGV[10],
    'server', ARGV[11], 'session', ARGV[12], 'digest', ARGV[13], 'args', ARGV[14],
    'rule', ARGV[15], 'reason', ARGV[16], 'rev', ARGV[17], 'reqid', ARGV[18],
    'created', tostring(now), 'expires', tostring(expires))
  redis.call('PEXPIREAT', rkey, expires + retention)
  redis.call('SET', bkey, id, 'PXAT', expires)
  redis.call('ZADD', idx, now, id)
  redis.call('ZADD', purge, expires + retention, id)
  redis.call('ZADD', open, expires, id)
  redis.call('ZADD', gkey, expires, id)
  redis.call('PEXPIREAT', gkey, expires + retention)
  redis.call('PUBLISH', chan, 'created:' .. id)
  return reply('created', id)
elseif op == 'redeem' then
  -- ARGV: 3 id, 4 grant, 5 tool, 6 server, 7 session, 8 digest, 9 decision id, 10 dry run
  local id = ARGV[3]
  local r = load(id)
  if not r then return { 'not_found', tostring(now) } end
  local fields = { { 'grant', 4 }, { 'tool', 5 }, { 'server', 6 }, { 'session', 7 },
    { 'digest', 8 } }
  for _, f in ipairs(fields) do
    if r[f[1]] ~= ARGV[f[2]] then
      return { 'mismatch', tostring(now), f[1], state_of(r) }
    end
  end
  local s = state_of(r)
  if s ~= 'approved' then return reply(s, id) end
  if ARGV[10] ~= '1' then
    redis.call('HSET', P .. 'r:' .. id, 'state', 'used', 'used_at', tostring(now),
      'used_by', ARGV[9])
    close(id, r.grant)
    redis.call('PUBLISH', chan, 'used:' .. id)
  end
  return reply('redeemed', id)
elseif op == 'release' then
  -- ARGV: 3 id, 4 decision id
  local id = ARGV[3]
  local r = load(id)
  if not r or r.state ~= 'used' or r.used_by ~= ARGV[4] then return { 'no', tostring(now) } end
  local rkey = P .. 'r:' .. id
  redis.call('HDEL', rkey, 'used_at', 'used_by')
  if now >= tonumber(r.expires) then
    redis.call('HSET', rkey, 'state', 'expired')
  else
    redis.call('HSET', rkey, 'state', 'approved')
    redis.call('ZADD', open, r.expires, id)
    redis.call('ZADD', P .. 'g:' .. r.grant, r.expires, id)
  end
  return { 'released', tostring(now) }
elseif op == 'decide' then
  -- ARGV: 3 id, 4 approve ('1' or '0'), 5 approver, 6 note
  local id = ARGV[3]
  local r = load(id)
  if not r then return { 'not_found', tostring(now) } end
  local s = state_of(r)
  if s ~= 'pending' then return reply('not_pending:' .. s, id) end
  local state = ARGV[4] == '1' and 'approved' or 'denied'
  redis.call('HSET', P .. 'r:' .. id, 'state', state, 'decided_at', tostring(now),
    'decided_by', ARGV[5], 'note', ARGV[6])
  if state == 'denied' then close(id, r.grant) end
  redis.call('PUBLISH', chan, state .. ':' .. id)
  return reply(state, id)
elseif op == 'get' then
  -- ARGV: 3 id
  if not load(ARGV[3]) then return { 'not_found', tostring(now) } end
  return reply('ok', ARGV[3])
elseif op == 'list' then
  -- ARGV: 3 state ('' any), 4 grant, 5 tool, 6 limit, 7 scan
  local ids = redis.call('ZREVRANGE', idx, 0, tonumber(ARGV[7]) - 1)
  local out = { 'ok', tostring(now) }
  local n = 0
  for _, id in ipairs(ids) do
    if n >= tonumber(ARGV[6]) then break end
    local r, flat = load(id)
    if r and (ARGV[3] == '' or state_of(r) == ARGV[3]) and (ARGV[4] == '' or r.grant == ARGV[4])
        and (ARGV[5] == '' or r.tool == ARGV[5]) then
      n = n + 1
      out[#out + 1] = tostring(#flat)
      for i = 1, #flat do out[#out + 1] = flat[i] end
    end
  end
  return out
elseif op == 'sweep' then
  local ids = sweep()
  local out = { 'ok', tostring(now) }
  for _, id in ipairs(ids) do out[#out + 1] = id end
  return out
end
return redis.error_reply('toolgate approvals: unknown operation ' .. tostring(op))
