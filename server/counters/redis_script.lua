-- toolgate: decide a batch of calls. For each call, in order: check every
-- limit of the call and, only if all have room, consume one unit of each
-- (or refund one). Atomic, timed by the Redis server's clock; each call is
-- decided as if it had a script run of its own. The protocol (arguments,
-- reply, markers, refunds) and the counters' string layouts are described
-- in redis_script_codec.h. This file stays under 16 KiB: Redis refuses a
-- longer argument (SCRIPT LOAD) from a client not yet authenticated with a
-- protocol error, where the client must see NOAUTH.
--
-- Bounded whatever a key holds: a read never takes more than a limit can
-- use (a log: its newest max entries, from the end, since only they can
-- decide; buckets: 128, more is corrupt; a pair: 40 bytes, more is
-- corrupt); a log is searched by bisection, never walked. Retry and reset
-- times are at most one window (a bucket more for "b").
--
-- Written for Redis's CPU: each redis.call costs more than the Lua around
-- it (argument objects, command lookup, reply conversion), so a counter
-- costs two (GETRANGE; SET with PX), and a key used by several calls of one
-- run is read once and written once, at the end (`state`). A call's changes
-- reach `state` only once all its limits admit it (all or nothing).
-- Arguments to redis.call are strings (Redis formats a Lua number with
-- "%.17g"); log times compare as strings (equal-length digit strings).
local call, try, tonumber, format, floor, find, match, sub, pcall, min, max_of =
  redis.call, redis.pcall, tonumber, string.format, math.floor, string.find, string.match,
  string.sub, pcall, math.min, math.max
local t = call('TIME')
local now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
local W = 13                        -- digits of a log time (years 2001 to 2286)
local now_w = format('%013d', now)  -- a log entry written now
local out = {now, 0, 0, 0, 0, 0}    -- Sized for one call with one limit, the common case.
local BW = 23                       -- "b": a bucket: index (13 digits), count (10)
local max_buckets = 128             -- "b": more is corrupt (65 at most are written)
local state = {}   -- key -> its counter as read (and as changed by the calls admitted so far)
local written = {} -- keys to write at the end, in order
local view = {}    -- per key of the call being decided: what consuming needs

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

-- Reads a counter's string, at most `len` bytes (from the end when `len`
-- is negative); raises the wrong-type marker.
local function read(key, from, to, i)
  local v = try('GETRANGE', key, from, to)
  if type(v) == 'table' then fail(2, i) end
  return v
end

-- Marks `st` (key's state) to be written at the end of the run.
local function dirty(key, st, ttl)
  if not st.dirty then
    st.dirty = true
    written[#written + 1] = key
  end
  st.ttl = ttl
end

-- The state of a log key, for a limit of `max` at `window`: entries
-- st.v (a string), st.n of them; st.first, the first in the window; st.whole
-- when st.v is the whole value (else its newest st.max entries).
local function log_state(key, window, max, i)
  local st = state[key]
  if st then
    if st.bad then fail(st.bad, i) end
    if st.whole or st.max >= max then return st end
  end
  local v = read(key, format('%d', -max * W), '-1', i)
  local n = #v / W
  st = {v = v, n = n, whole = #v < max * W, max = max}
  if n ~= floor(n) or find(v, '%D') or (n > 0 and tonumber(sub(v, -W)) > now + window) then
    state[key] = {bad = 3}
    fail(3, i)
  end
  -- Bisect for the first entry in the window (later than now - window).
  local cutoff = format('%013d', now - window)
  local lo, hi = 1, n + 1
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if sub(v, (mid - 1) * W + 1, mid * W) > cutoff then hi = mid else lo = mid + 1 end
  end
  st.first = lo
  state[key] = st
  return st
end

-- The state of a bucket key: st.total (live count), st.v (the records from
-- the first live bucket on), st.n records.
local function bucket_state(key, window, bs, i)
  local st = state[key]
  if st then
    if st.bad then fail(st.bad, i) end
    return st
  end
  local v = read(key, '0', format('%d', 10 + max_buckets * BW), i)
  local n = (#v - 10) / BW
  local total = 0
  if #v > 0 then
    total = num(sub(v, 1, 10))
    if not total or n ~= floor(n) or n < 0 or n > max_buckets or find(v, '%D')
       or (n > 0 and tonumber(sub(v, -BW, -11)) * bs > now + window) then
      state[key] = {bad = 3}
      fail(3, i)
    end
  else
    n = 0
  end
  -- Drop the expired buckets (oldest first) from the total.
  local gone = 0
  while gone < n and (tonumber(sub(v, gone * BW + 11, gone * BW + 23)) + 1) * bs - 1 <= now - window do
    total = total - tonumber(sub(v, gone * BW + 24, gone * BW + 33))
    gone = gone + 1
  end
  if total < 0 then
    state[key] = {bad = 3}
    fail(3, i)
  end
  st = {total = total, v = sub(v, gone * BW + 11), n = n - gone, dropped = gone > 0}
  state[key] = st
  return st
end

-- The state of a fixed window or token bucket key: st.a, st.b (its two
-- numbers), or st.a nil when empty.
local function pair_state(key, i)
  local st = state[key]
  if st then
    if st.bad then fail(st.bad, i) end
    return st
  end
  local v = read(key, '0', '39', i)
  st = {}
  if #v > 0 then
    local a, b = match(v, '^(%d+) (%d+)$')
    st.a, st.b = num(a), num(b)
    if not st.a or not st.b then
      state[key] = {bad = 3}
      fail(3, i)
    end
  end
  state[key] = st
  return st
end

-- The bucket size of a window.
local function bucket_size(window)
  local bs = floor((window + 63) / 64)
  if bs < 1 then bs = 1 end
  return bs
end

-- Refunds one call: the unit each of its n keys (after the k0 keys of the
-- calls before it) consumed at Redis time `at`.
local function refund(a0, k0, base, at)
  local n = tonumber(ARGV[a0 + 1])
  out[base + 1] = 1
  -- Read (and check) every key first: a call fails before it changes any.
  local sts = {}
  for i = 1, n do
    local key = KEYS[k0 + i]
    local a = a0 + 2 + (i - 1) * 4
    local alg, window = ARGV[a], tonumber(ARGV[a + 1])
    if alg == 's' then
      sts[i] = log_state(key, window, tonumber(ARGV[a + 2]), i)
    elseif alg == 'b' then
      sts[i] = bucket_state(key, window, bucket_size(window), i)
    else
      sts[i] = pair_state(key, i)
      if alg == 't' and sts[i].a and sts[i].b > now + window then fail(3, i) end
    end
  end
  for i = 1, n do
    local key = KEYS[k0 + i]
    local a = a0 + 2 + (i - 1) * 4
    local alg, window = ARGV[a], tonumber(ARGV[a + 1])
    local st = sts[i]
    if alg == 's' then
      -- The last entry at that time, if it is still in the window (an
      -- expired one no longer counts).
      local at_w = format('%013d', at)
      local lo, hi = st.first, st.n + 1
      while lo < hi do
        local mid = floor((lo + hi) / 2)
        if sub(st.v, (mid - 1) * W + 1, mid * W) > at_w then hi = mid else lo = mid + 1 end
      end
      local p = lo - 1
      if p >= st.first and sub(st.v, (p - 1) * W + 1, p * W) == at_w then
        st.v = sub(st.v, 1, (p - 1) * W) .. sub(st.v, p * W + 1)
        st.n = st.n - 1
        dirty(key, st, window)
      end
    elseif alg == 'b' then
      local bs = bucket_size(window)
      local idx = format('%013d', floor(at / bs))
      for j = st.n, 1, -1 do
        local o = (j - 1) * BW
        local b = sub(st.v, o + 1, o + 13)
        if b < idx then break end
        if b == idx then
          local c = tonumber(sub(st.v, o + 14, o + 23))
          if c > 0 then
            st.v = sub(st.v, 1, o + 13) .. format('%010d', c - 1) .. sub(st.v, o + 24)
            st.total = st.total - 1
            dirty(key, st, st.ttl or (tonumber(sub(st.v, -BW, -11)) + 1) * bs - 1 + window - now)
          end
          break
        end
      end
    elseif alg == 'f' then
      if st.a and st.a == floor(at / window) and st.b > 0 then
        st.b = st.b - 1
        dirty(key, st, max_of(1, (st.a + 1) * window - now))
      end
    else -- 't'
      if st.a then
        local max = tonumber(ARGV[a + 2])
        local cap = tonumber(ARGV[a + 3]) * window
        local units = st.a
        if now > st.b then units = units + (now - st.b) * max end
        units = min(cap, units + window)
        st.a, st.b = units, now
        dirty(key, st, max_of(1, units >= cap and 0 or floor((cap - units + max - 1) / max)))
      end
    end
    local o = base + 4 * i - 2
    out[o], out[o + 1], out[o + 2], out[o + 3] = 1, 0, 0, 0
  end
end

-- Decides one call: its mode at ARGV[a0], its n keys after the k0 keys of
-- the calls before it, its values from out[base + 1] on.
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
    local room, remaining, reset, retry = 0, 0, 0, 0
    if alg == 's' then
      local st = log_state(key, window, max, i)
      view[i] = st
      local live = st.n - st.first + 1
      if live < max then
        room = 1
        remaining = max - live
      end
      if live > 0 then
        -- reset_after: when the newest entry leaves the window (an admitted
        -- call's is the window, set below).
        reset = min(window, tonumber(sub(st.v, -W)) + window - now)
      end
      if room == 0 then
        -- Room again once the entry max places from the newest leaves.
        local k = st.n - max + 1
        retry = min(window, tonumber(sub(st.v, (k - 1) * W + 1, k * W)) + window - now)
      end
    elseif alg == 'b' then
      local bs = bucket_size(window)
      local st = bucket_state(key, window, bs, i)
      view[i] = st
      local count = st.total
      if count < max then room = 1 end
      remaining = max_of(0, max - count)
      if st.n > 0 then
        reset = min(window + bs, (tonumber(sub(st.v, -BW, -11)) + 1) * bs - 1 + window - now)
      end
      if room == 0 then
        local left = count
        for j = 1, st.n do
          local o = (j - 1) * BW
          left = left - tonumber(sub(st.v, o + 14, o + 23))
          if left < max then
            retry = min(window + bs, (tonumber(sub(st.v, o + 1, o + 13)) + 1) * bs - 1 + window - now)
            break
          end
        end
      end
    elseif alg == 'f' then
      local st = pair_state(key, i)
      view[i] = st
      local idx = floor(now / window)
      -- Another window's count (an earlier one, or one of a clock that went
      -- back) is replaced on the next admission.
      local count = st.a == idx and st.b or 0
      local wend = (idx + 1) * window
      if count < max then room = 1 end
      remaining = max_of(0, max - count)
      if count > 0 then reset = wend - now end
      if room == 0 then retry = wend - now end
    else -- 't'
      local st = pair_state(key, i)
      view[i] = st
      local cap = tonumber(ARGV[a + 3]) * window
      local units = cap
      if st.a then
        if st.b > now + window then fail(3, i) end
        units = st.a
        if now > st.b then units = min(cap, units + (now - st.b) * max) end
      end
      units = min(units, cap)
      st.units = units  -- (for this call only: consumed below)
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

  if out[base + 1] == 0 then return end  -- Refused: nothing is consumed.
  for i = 1, n do
    local key = KEYS[k0 + i]
    local a = a0 + 2 + (i - 1) * 4
    local alg = ARGV[a]
    local window = tonumber(ARGV[a + 1])
    local o = base + 4 * i - 2
    local st = view[i]
    if out[o + 1] > 0 then out[o + 1] = out[o + 1] - 1 end
    if alg == 's' then
      out[o + 2] = window
      if not dry then
        -- The entries before the window go (the newest max entries were
        -- read: admitted, so the oldest of them, and all before, expired).
        st.v = sub(st.v, (st.first - 1) * W + 1) .. now_w
        st.n = st.n - st.first + 2
        st.first = 1
        st.whole = true
        dirty(key, st, window)
      end
    elseif alg == 'b' then
      local bs = bucket_size(window)
      local b = floor(now / bs)
      local reset = (b + 1) * bs - 1 + window - now
      out[o + 2] = reset
      if not dry then
        local b_w = format('%013d', b)
        if st.n > 0 and sub(st.v, -BW, -11) == b_w then
          st.v = sub(st.v, 1, -11) .. format('%010d', tonumber(sub(st.v, -10)) + 1)
        else
          st.v = st.v .. b_w .. '0000000001'
          st.n = st.n + 1
        end
        st.total = st.total + 1
        dirty(key, st, reset)
      end
    elseif alg == 'f' then
      local idx = floor(now / window)
      local wend = (idx + 1) * window
      out[o + 2] = wend - now
      if not dry then
        st.b = (st.a == idx and st.b or 0) + 1
        st.a = idx
        dirty(key, st, max_of(1, wend - now))
      end
    else
      local max = tonumber(ARGV[a + 2])
      local units = st.units - window
      local cap = tonumber(ARGV[a + 3]) * window
      local reset = units >= cap and 0 or floor((cap - units + max - 1) / max)
      out[o + 2] = reset
      if not dry then
        st.a, st.b = units, now
        dirty(key, st, max_of(1, reset))
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
    ok, err = pcall(refund, a0, k0, base, num(sub(mode, 2)))
  else
    ok, err = pcall(decide, a0, k0, base)
  end
  if not ok then
    -- This call alone fails, with nothing consumed (every check comes before
    -- the first change): the marker, the key's position, zeros.
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

-- Every counter changed, written once, with its expiry (an empty one is
-- deleted: a counter with nothing counted).
for _, key in ipairs(written) do
  local st = state[key]
  local v
  if st.v then
    v = st.v
    if st.total then
      if st.n == 0 then v = '' else v = format('%010d', st.total) .. v end
    end
  else
    v = format('%d %d', st.a, st.b)
  end
  if v == '' then
    call('DEL', key)
  else
    call('SET', key, v, 'PX', format('%d', max_of(1, st.ttl)))
  end
end
return out
