-- toolgate: check every limit of one call and, only if all have room,
-- consume one unit of each. Atomic (a script runs alone), and timed by the
-- Redis server's own clock.
--
-- KEYS[i]  counter instance keys (see server/store/redis_store.h).
-- ARGV[1]  "1" for a dry run (decide, consume nothing).
-- ARGV[2 + 4*(i-1) ..]  for KEYS[i]: algorithm, window_ms, max, burst.
--   algorithm "s": sliding window, exact log (a list of admission times).
--   algorithm "b": sliding window, 64 buckets, for large max (memory bounded;
--                  counts a partly expired bucket whole, so never over-admits).
--   algorithm "f": fixed window, calendar aligned (a hash: window index, count).
--   algorithm "t": token bucket (a hash: level, last refill time).
-- Returns {admitted, and per key: has_room, remaining, reset_after_ms, retry_after_ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dry = ARGV[1] == '1'
local admitted = 1
local rows = {}

local function ceildiv(a, b)
  if a <= 0 then return 0 end
  return math.floor((a + b - 1) / b)
end

local function num(x) return string.format('%.0f', x) end

for i = 1, #KEYS do
  local key = KEYS[i]
  local a = 2 + (i - 1) * 4
  local alg = ARGV[a]
  local window = tonumber(ARGV[a + 1])
  local max = tonumber(ARGV[a + 2])
  local burst = tonumber(ARGV[a + 3])
  local r = {key = key, alg = alg, window = window, max = max, burst = burst,
             room = 0, remaining = 0, reset = 0, retry = 0}
  if alg == 's' then
    local cutoff = now - window
    local len = redis.call('LLEN', key)
    while len > 0 do
      local head = tonumber(redis.call('LINDEX', key, 0))
      if head > cutoff then break end
      redis.call('LPOP', key)
      len = len - 1
    end
    if len < max then r.room = 1 end
    r.remaining = math.max(0, max - len)
    if len > 0 then r.reset = tonumber(redis.call('LINDEX', key, -1)) + window - now end
    if r.room == 0 then
      r.retry = tonumber(redis.call('LINDEX', key, len - max)) + window - now
    end
  elseif alg == 'b' then
    local bs = math.max(1, ceildiv(window, 64))
    r.bs = bs
    local flat = redis.call('HGETALL', key)
    local buckets = {}
    local count = 0
    for j = 1, #flat, 2 do
      local b = tonumber(flat[j])
      local c = tonumber(flat[j + 1])
      if (b + 1) * bs - 1 > now - window then
        buckets[#buckets + 1] = {b, c}
        count = count + c
      else
        redis.call('HDEL', key, flat[j])
      end
    end
    table.sort(buckets, function(x, y) return x[1] < y[1] end)
    if count < max then r.room = 1 end
    r.remaining = math.max(0, max - count)
    if #buckets > 0 then r.reset = (buckets[#buckets][1] + 1) * bs - 1 + window - now end
    if r.room == 0 then
      local left = count
      for _, bc in ipairs(buckets) do
        left = left - bc[2]
        if left < max then
          r.retry = (bc[1] + 1) * bs - 1 + window - now
          break
        end
      end
    end
  elseif alg == 'f' then
    local idx = math.floor(now / window)
    local v = redis.call('HMGET', key, 'w', 'c')
    local count = 0
    if v[1] and tonumber(v[1]) == idx then count = tonumber(v[2]) end
    r.idx = idx
    r.count = count
    r.wend = (idx + 1) * window
    if count < max then r.room = 1 end
    r.remaining = math.max(0, max - count)
    if count > 0 then r.reset = r.wend - now end
    if r.room == 0 then r.retry = r.wend - now end
  else -- 't'
    local cap = burst * window
    local v = redis.call('HMGET', key, 'u', 't')
    local units = cap
    if v[1] then
      units = tonumber(v[1])
      local last = tonumber(v[2])
      if now > last then units = math.min(cap, units + (now - last) * max) end
    end
    units = math.min(units, cap)
    r.units = units
    r.cap = cap
    if units >= window then r.room = 1 end
    r.remaining = math.floor(units / window)
    r.reset = ceildiv(cap - units, max)
    if r.room == 0 then r.retry = ceildiv(window - units, max) end
  end
  if r.room == 0 then admitted = 0 end
  rows[i] = r
end

if admitted == 1 then
  for _, r in ipairs(rows) do
    r.remaining = math.max(0, r.remaining - 1)
    if r.alg == 's' then
      r.reset = r.window
      if not dry then
        redis.call('RPUSH', r.key, num(now))
        redis.call('PEXPIRE', r.key, r.window)
      end
    elseif r.alg == 'b' then
      local b = math.floor(now / r.bs)
      r.reset = (b + 1) * r.bs - 1 + r.window - now
      if not dry then
        redis.call('HINCRBY', r.key, num(b), 1)
        redis.call('PEXPIRE', r.key, r.reset)
      end
    elseif r.alg == 'f' then
      r.reset = r.wend - now
      if not dry then
        redis.call('HSET', r.key, 'w', num(r.idx), 'c', num(r.count + 1))
        redis.call('PEXPIRE', r.key, math.max(1, r.wend - now))
      end
    else
      local units = r.units - r.window
      r.reset = ceildiv(r.cap - units, r.max)
      if not dry then
        redis.call('HSET', r.key, 'u', num(units), 't', num(now))
        redis.call('PEXPIRE', r.key, math.max(1, r.reset))
      end
    end
  end
end

local out = {admitted}
for _, r in ipairs(rows) do
  out[#out + 1] = r.room
  out[#out + 1] = r.remaining
  out[#out + 1] = r.reset
  out[#out + 1] = r.retry
end
return out
