-- toolgate: decide a batch of calls. For each call, in order: check every
-- limit of the call and, only if all have room, consume one unit of each.
-- Atomic (a script runs alone), and timed by the Redis server's own clock.
-- The calls of a batch are independent: each is admitted or refused on its
-- own, exactly as if each were a script run of its own, in batch order.
--
-- KEYS     the counter instance keys of every call, call after call (see
--          server/counters/redis_store.h).
-- ARGV[1]  the number of calls.
-- Then for each call: its mode ("0": decide and consume; "1": dry run,
-- decide, consume nothing; "r<ms>": refund, see below), its number of keys
-- n, and for each of its n keys: algorithm, window_ms, max, burst.
--   algorithm "s": sliding window, exact log (a list of admission times).
--   algorithm "b": sliding window, 64 buckets, for large max (memory bounded;
--                  counts a partly expired bucket whole, so never over-admits).
--   algorithm "f": fixed window, calendar aligned (a hash: window index, count).
--   algorithm "t": token bucket (a hash: level, last refill time).
-- Returns the run's Redis time (ms), then call after call: admitted, and per
-- key: has_room, remaining, reset_after_ms, retry_after_ms. A call whose key holds a value of another
-- type gets admitted = 2 and, in place of the first key's has_room, the
-- position of that key; a call whose key is of the right type but holds
-- what toolgate never writes (corrupt: a log entry or count that is not a
-- time or count of the Redis clock's range, a negative, fractional, NaN or
-- huge number, more buckets than a limit ever keeps) gets
-- admitted = 3 and that key's position (0: not known). Either way nothing
-- of that call is counted, and the other calls are decided as usual: each
-- call runs under pcall, so not even an unforeseen error in one call's
-- keys fails the batch.
--
-- Bounded whatever a key holds: a stored number is read only if it has at
-- most 16 digits (no sign, point or exponent) and is at most 2^53; a log
-- longer than the call's max is never walked: its entry max places from
-- the end decides (in the window: full; else it and all before it have
-- expired and go in one LTRIM, leaving fewer than max entries); a bucket
-- hash with more than 128 fields (at most 65 are ever written) is corrupt;
-- a time more than one window past the Redis clock is corrupt. Retry and
-- reset times are at most one window (a bucket more for "b").
--
-- A refund ("r<ms>") gives back, exactly, the one unit each of its keys
-- consumed in an admission by the script run whose Redis time was <ms>
-- (a call admitted on one Redis Cluster slot and refused on another):
-- "s" removes one log entry equal to that time (none: it has expired);
-- "b" decrements that time's bucket if above 0; "f" decrements the count
-- if the stored window is still that time's and the count above 0; "t"
-- adds one call's units to the level refilled to now, capped at the
-- capacity. It never creates a key and never leaves a counter with more
-- room than it would have had without the admission. Its result is
-- admitted, each key has_room, zeros.
--
-- Every check runs this script, so it is written for speed: one script run
-- serves many calls (a script run costs Redis more than the work in it),
-- results go straight into the reply array, per-key state into two flat
-- arrays, and the common case (a sliding window with room) makes four Redis
-- calls per call, plus one TIME per batch: LLEN, LINDEX, RPUSH, PEXPIRE.
-- Arguments to redis.call are passed as strings: Redis formats a Lua number
-- with "%.17g", which costs more than the call itself, and an integer formats
-- faster with "%d". Times in a log are compared as strings (digit strings of
-- equal length compare like numbers), which saves parsing them.
local call, try, tonumber, format, floor, find, pcall, min, max_of =
  redis.call, redis.pcall, tonumber, string.format, math.floor, string.find, pcall, math.min,
  math.max
local t = call('TIME')
local now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
local now_s = format('%d', now)
local out = {now, 0, 0, 0, 0, 0}  -- Sized for one call with one limit, the common case.
local s1 = {}  -- per key of a call: "s" length; "b" bucket size; "f" window index; "t" level
local s2 = {}  -- per key of a call: "f" count; "t" capacity
local max_buckets = 128  -- "b": fields a bucket hash may hold (65 at most are written)

-- A number as toolgate stores it: digits only, at most 16 of them and at
-- most 2^53 (exact in a Lua number); nil for anything else.
local function num(s)
  if type(s) ~= 'string' or #s == 0 or #s > 16 or find(s, '%D') then return nil end
  local v = tonumber(s)
  if v > 9007199254740992 then return nil end
  return v
end

-- Raised (through pcall) when key i of the call holds a value of another
-- type (2) or content toolgate never writes (3).
local function fail(marker, i) error({marker = marker, key = i}, 0) end

-- Refunds one call: the unit each of its n keys (after the k0 keys of the
-- calls before it) consumed at Redis time `at`.
local function refund(a0, k0, base, at)
  local n = tonumber(ARGV[a0 + 1])
  out[base + 1] = 1
  for i = 1, n do
    local key = KEYS[k0 + i]
    local a = a0 + 2 + (i - 1) * 4
    local alg = ARGV[a]
    local window = tonumber(ARGV[a + 1])
    if alg == 's' then
      local len = try('LLEN', key)
      if type(len) == 'table' then fail(2, i) end
      -- Entries are in time order and the refunded one is recent: LREM
      -- walks from the tail, and only the newest max entries can be live.
      if len > 0 then call('LREM', key, '-1', format('%d', at)) end
    elseif alg == 'b' then
      local bs = floor((window + 63) / 64)
      if bs < 1 then bs = 1 end
      local field = format('%d', floor(at / bs))
      local c = try('HGET', key, field)
      if type(c) == 'table' then fail(2, i) end
      if c then
        local v = num(c)
        if not v then fail(3, i) end
        if v > 0 then call('HINCRBY', key, field, '-1') end
      end
    elseif alg == 'f' then
      local v = try('HMGET', key, 'w', 'c')
      if v.err then fail(2, i) end
      if v[1] then
        local w, c = num(v[1]), num(v[2])
        if not w or not c then fail(3, i) end
        if w == floor(at / window) and c > 0 then call('HSET', key, 'c', format('%d', c - 1)) end
      end
    else -- 't'
      local max = tonumber(ARGV[a + 2])
      local cap = tonumber(ARGV[a + 3]) * window
      local v = try('HMGET', key, 'u', 't')
      if v.err then fail(2, i) end
      if v[1] or v[2] then
        local units, last = num(v[1]), num(v[2])
        if not units or not last or last > now + window then fail(3, i) end
        if now > last then units = units + (now - last) * max end
        units = min(cap, units + window)
        local reset = units >= cap and 0 or floor((cap - units + max - 1) / max)
        call('HSET', key, 'u', format('%d', units), 't', now_s)
        call('PEXPIRE', key, format('%d', max_of(1, reset)))
      end
    end
    local o = base + 4 * i - 2
    out[o], out[o + 1], out[o + 2], out[o + 3] = 1, 0, 0, 0
  end
end

-- Decides one call: its dry-run flag at ARGV[a0], its n keys after the k0
-- keys of the calls before it, its values from out[base + 1] on.
local function decide(a0, k0, base)
  local dry = ARGV[a0] == '1'
  local n = tonumber(ARGV[a0 + 1])
  out[base + 1] = 1  -- admitted; then key i's four values at base + 4i - 2 ..

  for i = 1, n do
    local key = KEYS[k0 + i]
    local a = a0 + 2 + (i - 1) * 4
    local alg = ARGV[a]
    local window = tonumber(ARGV[a + 1])
    local max = tonumber(ARGV[a + 2])
    local latest = now + window  -- No stored time may be later.
    local room, remaining, reset, retry = 0, 0, 0, 0
    if alg == 's' then
      local cutoff = format('%d', now - window)
      local len = try('LLEN', key)
      if type(len) == 'table' then fail(2, i) end
      if len > max then
        -- More entries than max (a revision with a larger max shares the
        -- log, or the log is corrupt): only the newest max can decide.
        local pivot = num(call('LINDEX', key, format('%d', len - max)))
        if not pivot or pivot > latest then fail(3, i) end
        if pivot > now - window then
          -- The newest max entries are all in the window: full. (The log
          -- is in time order.)
          local last = num(call('LINDEX', key, '-1'))
          if not last or last > latest then fail(3, i) end
          s1[i] = len
          remaining = 0
          reset = min(window, last + window - now)
          retry = min(window, pivot + window - now)
        else
          -- The pivot and everything before it have expired.
          call('LTRIM', key, format('%d', len - max + 1), '-1')
          len = max - 1
        end
      end
      if len <= max then
        while len > 0 do
          local head = call('LINDEX', key, '0')
          if #head > #cutoff or (#head == #cutoff and head > cutoff) then
            local v = num(head)
            if not v or v > latest then fail(3, i) end
            break
          end
          if #head == 0 or find(head, '%D') then fail(3, i) end
          call('LPOP', key)
          len = len - 1
        end
        s1[i] = len
        if len < max then
          room = 1
          remaining = max - len
          -- reset_after: only needed when the call is refused (see below);
          -- an admitted call's is the window.
        else
          local last = num(call('LINDEX', key, '-1'))
          local first = num(call('LINDEX', key, format('%d', len - max)))
          if not last or last > latest or not first or first > latest then fail(3, i) end
          remaining = 0
          reset = min(window, last + window - now)
          retry = min(window, first + window - now)
        end
      end
    elseif alg == 'b' then
      local bs = floor((window + 63) / 64)
      if bs < 1 then bs = 1 end
      s1[i] = bs
      local fields = try('HLEN', key)
      if type(fields) == 'table' then fail(2, i) end
      if fields > max_buckets then fail(3, i) end
      local flat = call('HGETALL', key)
      local buckets = {}
      local count = 0
      for j = 1, #flat, 2 do
        local b = num(flat[j])
        local c = num(flat[j + 1])
        if not b or not c or b * bs > latest then fail(3, i) end
        if (b + 1) * bs - 1 > now - window then
          buckets[#buckets + 1] = {b, c}
          count = count + c
        else
          call('HDEL', key, flat[j])
        end
      end
      table.sort(buckets, function(x, y) return x[1] < y[1] end)
      if count < max then room = 1 end
      remaining = max_of(0, max - count)
      if #buckets > 0 then
        reset = min(window + bs, (buckets[#buckets][1] + 1) * bs - 1 + window - now)
      end
      if room == 0 then
        local left = count
        for _, bc in ipairs(buckets) do
          left = left - bc[2]
          if left < max then
            retry = min(window + bs, (bc[1] + 1) * bs - 1 + window - now)
            break
          end
        end
      end
    elseif alg == 'f' then
      local idx = floor(now / window)
      local v = try('HMGET', key, 'w', 'c')
      if v.err then fail(2, i) end
      local count = 0
      if v[1] then
        local w = num(v[1])
        if not w then fail(3, i) end
        -- Another window's count (an earlier one, or one of a clock that
        -- went back) is replaced on the next admission.
        if w == idx then
          count = num(v[2])
          if not count then fail(3, i) end
        end
      end
      s1[i] = idx
      s2[i] = count
      local wend = (idx + 1) * window
      if count < max then room = 1 end
      remaining = max_of(0, max - count)
      if count > 0 then reset = wend - now end
      if room == 0 then retry = wend - now end
    else -- 't'
      local burst = tonumber(ARGV[a + 3])
      local cap = burst * window
      local v = try('HMGET', key, 'u', 't')
      if v.err then fail(2, i) end
      local units = cap
      if v[1] or v[2] then
        units = num(v[1])
        local last = num(v[2])
        if not units or not last or last > latest then fail(3, i) end
        if now > last then units = min(cap, units + (now - last) * max) end
      end
      units = min(units, cap)
      s1[i] = units
      s2[i] = cap
      if units >= window then room = 1 end
      remaining = floor(units / window)
      reset = units >= cap and 0 or floor((cap - units + max - 1) / max)
      if room == 0 then retry = floor((window - units + max - 1) / max) end
    end
    if room == 0 then out[base + 1] = 0 end
    local o = base + 4 * i - 2
    out[o] = room
    out[o + 1] = remaining
    out[o + 2] = reset
    out[o + 3] = retry
  end

  if out[base + 1] == 0 then
    -- Refused: nothing is consumed. A sliding window's reset_after is when its
    -- newest entry leaves the window.
    for i = 1, n do
      local a = a0 + 2 + (i - 1) * 4
      if ARGV[a] == 's' and s1[i] > 0 and out[base + 4 * i - 2] == 1 then
        local window = tonumber(ARGV[a + 1])
        local last = num(call('LINDEX', KEYS[k0 + i], '-1'))
        if not last or last > now + window then fail(3, i) end
        out[base + 4 * i] = min(window, last + window - now)
      end
    end
  else
    for i = 1, n do
      local key = KEYS[k0 + i]
      local a = a0 + 2 + (i - 1) * 4
      local alg = ARGV[a]
      local window = tonumber(ARGV[a + 1])
      local o = base + 4 * i - 2
      if out[o + 1] > 0 then out[o + 1] = out[o + 1] - 1 end
      if alg == 's' then
        out[o + 2] = window
        if not dry then
          call('RPUSH', key, now_s)
          call('PEXPIRE', key, ARGV[a + 1])
        end
      elseif alg == 'b' then
        local bs = s1[i]
        local b = floor(now / bs)
        local reset = (b + 1) * bs - 1 + window - now
        out[o + 2] = reset
        if not dry then
          call('HINCRBY', key, format('%d', b), '1')
          call('PEXPIRE', key, format('%d', reset))
        end
      elseif alg == 'f' then
        local idx = s1[i]
        local wend = (idx + 1) * window
        out[o + 2] = wend - now
        if not dry then
          call('HSET', key, 'w', format('%d', idx), 'c', format('%d', s2[i] + 1))
          call('PEXPIRE', key, format('%d', max_of(1, wend - now)))
        end
      else
        local max = tonumber(ARGV[a + 2])
        local units = s1[i] - window
        local cap = s2[i]
        local reset = units >= cap and 0 or floor((cap - units + max - 1) / max)
        out[o + 2] = reset
        if not dry then
          call('HSET', key, 'u', format('%d', units), 't', now_s)
          call('PEXPIRE', key, format('%d', max_of(1, reset)))
        end
      end
    end
  end
end

local k0 = 0   -- keys of the calls before this one
local a0 = 2   -- ARGV index of this call's mode
local base = 1 -- values in out before this call's (the time first)
for _ = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a0 + 1])
  local mode = ARGV[a0]
  local ok, err
  if #mode > 1 then
    ok, err = pcall(refund, a0, k0, base, num(mode:sub(2)))
  else
    ok, err = pcall(decide, a0, k0, base)
  end
  if not ok then
    -- This call alone fails, with nothing consumed (every check comes before
    -- the first write): the marker, the key's position, zeros.
    for j = base + 1, base + 1 + 4 * n do out[j] = 0 end
    if type(err) == 'table' and err.marker then
      out[base + 1] = err.marker
      out[base + 2] = err.key
    else
      out[base + 1] = 3  -- An error no check foresaw: a key's content, at an unknown key.
    end
  end
  k0 = k0 + n
  a0 = a0 + 2 + 4 * n
  base = base + 1 + 4 * n
end
for j = base + 1, 6 do out[j] = nil end  -- (Fewer values than presized.)
return out
