-- toolgate reservations in Redis. One script, one operation per run
-- (ARGV[1]) on one reservation: KEYS[1] = `<prefix>res:{<id>}`, a hash, so
-- that a Redis Cluster spreads reservations over its slots. Time is Redis's.
--
-- Fields: state (reserved | succeeded | failed | expired), dec (the decision
-- that reserved), deadline (ms), bound (the most `cost` a settlement may
-- name: the fewest units reserved of a limit whose cost came from the
-- arguments; -1 when none did), limits (the reserved limits, encoded by the
-- server; opaque here), cost (when settled with one).
-- The key expires `keep` ms after the deadline: past the deadline Settle
-- finds nothing (not_found), and the creating server can still record the
-- expiry.
--
-- Replies: { code, now, ... }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, key = ARGV[1], KEYS[1]

if op == 'create' then
  -- ARGV: 2 decision id, 3 timeout ms, 4 bound, 5 limits, 6 keep ms
  local deadline = now + tonumber(ARGV[3])
  redis.call('HSET', key, 'state', 'reserved', 'dec', ARGV[2], 'deadline', deadline,
             'bound', ARGV[4], 'limits', ARGV[5])
  redis.call('PEXPIREAT', key, deadline + tonumber(ARGV[6]))
  return { 'created', tostring(now), tostring(deadline) }
end

local r = redis.call('HMGET', key, 'state', 'dec', 'deadline', 'bound', 'cost')
local state, dec, deadline, bound, cost = r[1], r[2], tonumber(r[3]), tonumber(r[4]), r[5]
if not state then return { 'not_found', tostring(now) } end

if op == 'settle' then
  -- ARGV: 2 outcome (succeeded | failed), 3 cost ('' when not given)
  if now >= deadline then return { 'not_found', tostring(now) } end
  if state ~= 'reserved' then
    return { 'already', tostring(now), dec, state, cost or '' }
  end
  if ARGV[2] == 'succeeded' and ARGV[3] ~= '' and bound >= 0 and tonumber(ARGV[3]) > bound then
    return { 'cost_too_high', tostring(now), tostring(bound) }
  end
  redis.call('HSET', key, 'state', ARGV[2])
  if ARGV[3] ~= '' then redis.call('HSET', key, 'cost', ARGV[3]) end
  return { 'settled', tostring(now), dec, redis.call('HGET', key, 'limits') }
end

if op == 'revert' then
  -- ARGV: 2 outcome the reverting server settled it as
  if now < deadline and state == ARGV[2] then
    redis.call('HSET', key, 'state', 'reserved')
    redis.call('HDEL', key, 'cost')
    return { 'reverted', tostring(now), tostring(deadline - now) }
  end
  return { 'kept', tostring(now) }
end

if op == 'expire' then
  -- The creating server, at the deadline: records the commit once.
  if state ~= 'reserved' then return { 'settled', tostring(now) } end
  if now < deadline then return { 'early', tostring(now), tostring(deadline - now) } end
  redis.call('HSET', key, 'state', 'expired')
  return { 'expired', tostring(now), dec }
end

return redis.error_reply('toolgate reservations: unknown operation ' .. tostring(op))
