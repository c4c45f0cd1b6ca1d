-- toolgate: decide a batch of calls. For each call, in order: check every
-- limit of the call and, only if all have room for the call's cost there,
-- consume that cost of each (or, for a refund, give units back). Atomic, timed by the Redis server's
-- clock; each call is decided as if it had a script run of its own. The
-- protocol (arguments, reply, markers, refunds) and what each key holds are
-- described in redis_script_codec.h. The script is sent without its comment
-- lines (CMakeLists.txt), and so must stay under 16 KiB: Redis answers a
-- longer argument (SCRIPT LOAD) from a client that has not authenticated
-- yet with a protocol error, where the client must see NOAUTH.
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
-- Written for Redis's CPU: a redis.call costs more than the Lua around it,
-- and a run more than its calls. So one run serves many calls; its fixed
-- windows and token buckets (strings) are read by one MGET, kept in `state`
-- as its calls change them (a call's changes only once all its limits
-- admit it), and each written once at the end: a fixed window by INCRBY in
-- the window it was read in (its expiry, the window's end, stays), else by
-- SET ... PX, as a token bucket. A sliding window with room costs four
-- calls (LLEN, LINDEX, RPUSH, PEXPIRE). A cost of c is c entries of the
-- same time in a log (one RPUSH; c is at most max), c added to a bucket
-- or a fixed window, c calls' units taken from a token bucket; a cost of 0
-- always has room and changes nothing. Arguments to redis.call are strings
-- (Redis formats a Lua number with "%.17g"); log times compare as strings.
local call, try, tonumber, format, floor, find, sub, pcall, min, max_of, unpack =
  redis.call, redis.pcall, tonumber, string.format, math.floor, string.find, string.sub, pcall,
  math.min, math.max, unpack
local t = call('TIME')
local now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
local now_s = format('%d', now)
local out = {now, 0, 0, 0, 0, 0}  -- Sized for one call with one limit, the common case.
local s1 = {}  -- per key of a call: "s" length; "b" bucket size; "f" count; "t" level
local max_buckets = 128  -- "b": fields a bucket hash may hold (65 at most are written)
local FW = 10000000000   -- "f": value = (window index mod 100000) * FW + count
local state = {}   -- "f", "t" key -> {a, b: its numbers (nil: empty); bad: its marker}
local written = {} -- "f", "t" keys changed, in order

-- A number as toolgate stores it: digits only, at most 16 of them and at
-- most 2^53 (exact in a Lua number); nil for anything else.
local function num(s)
  if type(s) ~= 'string' or #s == 0 or #s > 16 or find(s, '%D') then return nil end
  local v = tonumber(s)
  if v > 9007199254740992 then return nil end
  return v
end

-- ARGV[i] as a number: the calls of a run repeat the same few windows and
-- maxima, so each string is converted once.
local nums = {}
local function argn(i)
  local s = ARGV[i]
  local v = nums[s]
  if not v then
    v = tonumber(s)
    nums[s] = v
  end
  return v
end

-- Raised (through pcall) when key i of the call holds a value of another
-- type (2) or content toolgate never writes (3).
local function fail(marker, i) error({marker = marker, key = i}, 0) end

-- Every key of the run, read by one MGET when ARGV[2] says a call uses a
-- fixed window or token bucket: their strings (a sliding window's list or
-- hash reads as nil, unused).
local vals = ARGV[2] == '1' and call('MGET', unpack(KEYS)) or {}

-- The state of fixed window or token bucket (`alg`) key KEYS[k], from
-- `vals` the first time; st.bad: its marker. MGET answers nil for a key of
-- another type too: EXISTS tells (only for a missing key).
local function load_string(k, alg)
  local key = KEYS[k]
  local st = state[key]
  if not st then
    local v = vals[k]
    st = {}
    if not v then
      if call('EXISTS', key) == 1 then st.bad = 2 end
    elseif alg == 'f' then
      st.a = num(v)
      if not st.a or st.a >= 100000 * FW then st.bad = 3 end
      st.read = st.a
    else
      local sp = find(v, ' ', 1, true)  -- (A plain find: a pattern costs more.)
      if sp then st.a, st.b = num(sub(v, 1, sp - 1)), num(sub(v, sp + 1)) end
      if not st.a or not st.b then st.bad = 3 end
    end
    state[key] = st
  end
  return st
end

-- The same, as key i of its call: raises its marker.
local function string_state(k, alg, i)
  local st = load_string(k, alg)
  if st.bad then fail(st.bad, i) end
  return st
end

-- Marks a string key's state to be written at the end, with its expiry.
local function dirty(key, st, ttl)
  if not st.dirty then
    st.dirty = true
    written[#written + 1] = key
  end
  st.ttl = ttl
end

-- A fixed window's count in window `idx` (another window's is 0).
local function count_in(st, idx)
  if st.a and floor(st.a / FW) == idx % 100000 then return st.a % FW end
  return 0
end

-- A bucketed window's bucket size.
local function bucket_size(window)
  local bs = floor((window + 63) / 64)
  if bs < 1 then bs = 1 end
  return bs
end

-- Refunds one call: the units (its cost argument) each of its n keys
-- (after the k0 keys of the calls before it) consumed at Redis time `at`.
local function refund(a0, k0, base, at)
  local n = argn(a0 + 1)
  out[base + 1] = 1
  -- Every key is read and checked before any is changed (all or nothing):
  -- sts[i] is a string's state, the position of a log's entry, or a
  -- bucket's count.
  local sts = {}
  local at_s = format('%d', at)
  for i = 1, n do
    local key = KEYS[k0 + i]
    local a = a0 + 2 + (i - 1) * 5
    local alg = ARGV[a]
    local window = argn(a + 1)
    if alg == 's' then
      local len = try('LLEN', key)
      if type(len) == 'table' then fail(2, i) end
      -- Entries of that time are still in the window.
      sts[i] = len > 0 and at > now - window
    elseif alg == 'b' then
      local c = try('HGET', key, format('%d', floor(at / bucket_size(window))))
      if type(c) == 'table' then fail(2, i) end
      if c then
        sts[i] = num(c)
        if not sts[i] then fail(3, i) end
      end
    else
      sts[i] = string_state(k0 + i, alg, i)
      if alg == 't' and sts[i].a and sts[i].b > now + window then fail(3, i) end
    end
  end
  for i = 1, n do
    local key = KEYS[k0 + i]
    local a = a0 + 2 + (i - 1) * 5
    local alg = ARGV[a]
    local window = argn(a + 1)
    local g = argn(a + 4)
    local st = sts[i]
    if g == 0 then
    elseif alg == 's' then
      -- At most g entries of that time, from the newest (LREM with 0 would
      -- take them all: g is at least 1 here).
      if st then call('LREM', key, format('%d', -g), at_s) end
    elseif alg == 'b' then
      if st and st > 0 then
        call('HINCRBY', key, format('%d', floor(at / bucket_size(window))),
          format('%d', -min(g, st)))
      end
    elseif alg == 'f' then
      local idx = floor(at / window)
      local c = count_in(st, idx)
      if c > 0 then
        st.a = st.a - min(g, c)
        dirty(key, st, max_of(1, (idx + 1) * window - now))
      end
    elseif st.a then -- 't'
      local max = argn(a + 2)
      local cap = argn(a + 3) * window
      local units = st.a
      if now > st.b then units = units + (now - st.b) * max end
      units = min(cap, units + g * window)
      st.a, st.b = units, now
      dirty(key, st, max_of(1, units >= cap and 0 or floor((cap - units + max - 1) / max)))
    end
    local o = base + 4 * i - 2
    out[o], out[o + 1], out[o + 2], out[o + 3] = 1, 0, 0, 0
  end
end

-- Decides one call: its dry-run flag at ARGV[a0], its n keys after the k0
-- keys of the calls before it, its values from out[base + 1] on.
local function decide(a0, k0, base)
  local dry = ARGV[a0] == '1'
  local n = argn(a0 + 1)
  out[base + 1] = 1  -- admitted; then key i's four values at base + 4i - 2 ..

  for i = 1, n do
    local key = KEYS[k0 + i]
    local a = a0 + 2 + (i - 1) * 5
    local alg = ARGV[a]
    local window = argn(a + 1)
    local max = argn(a + 2)
    local c = argn(a + 4)  -- The call's cost here.
    local latest = now + window  -- No stored time may be later.
    local room, remaining, reset, retry = 0, 0, 0, 0
    if alg == 's' then
      local cutoff = format('%d', now - window)
      local len = try('LLEN', key)
      if type(len) == 'table' then fail(2, i) end
      local full = false
      if len > max then
        -- More entries than max (a revision with a larger max shares the
        -- log, or the log is corrupt): only the newest max can decide.
        local pivot = num(call('LINDEX', key, format('%d', len - max)))
        if not pivot or pivot > latest then fail(3, i) end
        if pivot > now - window then
          -- The newest max entries are all in the window: full. (The log
          -- is in time order.)
          full = true
        else
          -- The pivot and everything before it have expired.
          call('LTRIM', key, format('%d', len - max + 1), '-1')
          len = max - 1
        end
      end
      if not full then
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
      end
      s1[i] = len
      remaining = max_of(0, max - len)
      if c == 0 or len + c <= max then
        room = 1
        -- reset_after: only needed when the call is refused or costs 0
        -- (see below); an admitted call's is the window.
      else
        -- The call fits once the entry j (0-based) and all before it have
        -- left the window.
        local j = len + c - max - 1
        local last = num(call('LINDEX', key, '-1'))
        local first = j < len and num(call('LINDEX', key, format('%d', j)))
        if not last or last > latest or first == nil or (first and first > latest) then
          fail(3, i)
        end
        reset = min(window, last + window - now)
        retry = first and min(window, first + window - now) or window
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
      if c == 0 or count + c <= max then room = 1 end
      remaining = max_of(0, max - count)
      if #buckets > 0 then
        reset = min(window + bs, (buckets[#buckets][1] + 1) * bs - 1 + window - now)
      end
      if room == 0 then
        local left = count
        retry = window + bs
        for _, bc in ipairs(buckets) do
          left = left - bc[2]
          if left + c <= max then
            retry = min(window + bs, (bc[1] + 1) * bs - 1 + window - now)
            break
          end
        end
      end
    elseif alg == 'f' then
      local idx = floor(now / window)
      local st = state[key]
      if not st or st.bad then st = string_state(k0 + i, alg, i) end
      -- Another window's count (an earlier one, or one of a clock that went
      -- back) is replaced on the next admission.
      local count = 0
      local v = st.a
      if v and floor(v / FW) == idx % 100000 then count = v % FW end
      s1[i] = count
      local wend = (idx + 1) * window - now
      remaining = max_of(0, max - count)
      if c == 0 or count + c <= max then room = 1 end
      if count > 0 then reset = wend end
      if room == 0 then retry = wend end
    else -- 't'
      local st = state[key]
      if not st or st.bad then st = string_state(k0 + i, alg, i) end
      local cap = argn(a + 3) * window
      local units = cap
      if st.a then
        if st.b > latest then fail(3, i) end
        units = st.a
        if now > st.b then units = min(cap, units + (now - st.b) * max) end
      end
      units = min(units, cap)
      s1[i] = units
      if units >= c * window then room = 1 end
      remaining = floor(units / window)
      reset = units >= cap and 0 or floor((cap - units + max - 1) / max)
      if room == 0 then retry = floor((c * window - units + max - 1) / max) end
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
      local a = a0 + 2 + (i - 1) * 5
      if ARGV[a] == 's' and s1[i] > 0 and out[base + 4 * i - 2] == 1 then
        local window = argn(a + 1)
        local last = num(call('LINDEX', KEYS[k0 + i], '-1'))
        if not last or last > now + window then fail(3, i) end
        out[base + 4 * i] = min(window, last + window - now)
      end
    end
  else
    for i = 1, n do
      local key = KEYS[k0 + i]
      local a = a0 + 2 + (i - 1) * 5
      local alg = ARGV[a]
      local window = argn(a + 1)
      local c = argn(a + 4)
      local o = base + 4 * i - 2
      out[o + 1] = max_of(0, out[o + 1] - c)
      if c == 0 then
        -- Nothing taken: the counter's own reset (a log's, from its newest entry).
        if alg == 's' and s1[i] > 0 then
          local last = num(call('LINDEX', key, '-1'))
          if not last or last > now + window then fail(3, i) end
          out[o + 2] = min(window, last + window - now)
        end
      elseif alg == 's' then
        out[o + 2] = window
        if not dry then
          if c == 1 then
            call('RPUSH', key, now_s)
          else
            local reps = {}
            for r = 1, c do reps[r] = now_s end
            call('RPUSH', key, unpack(reps))
          end
          call('PEXPIRE', key, ARGV[a + 1])
        end
      elseif alg == 'b' then
        local bs = s1[i]
        local b = floor(now / bs)
        local reset = (b + 1) * bs - 1 + window - now
        out[o + 2] = reset
        if not dry then
          call('HINCRBY', key, format('%d', b), ARGV[a + 4])
          call('PEXPIRE', key, format('%d', reset))
        end
      elseif alg == 'f' then
        local idx = floor(now / window)
        local wend = (idx + 1) * window - now
        out[o + 2] = wend
        if not dry then
          local st = state[key]
          local count = s1[i]
          if count == 0 then st.fresh = true end  -- A new window (or key): SET.
          st.a = (idx % 100000) * FW + count + c
          if not st.dirty then
            st.dirty = true
            written[#written + 1] = key
          end
          st.ttl = wend
        end
      else
        local max = argn(a + 2)
        local units = s1[i] - c * window
        local cap = argn(a + 3) * window
        local reset = units >= cap and 0 or floor((cap - units + max - 1) / max)
        out[o + 2] = reset
        if not dry then
          local st = state[key]
          st.a, st.b = units, now
          dirty(key, st, max_of(1, reset))
        end
      end
    end
  end
end

-- A call with one limit, a fixed window or token bucket (most calls): what
-- decide does, without its generality or pcall (nothing here can raise).
local function fast(alg, a0, k, base, consume)
  local st = load_string(k, alg)
  local window, max, c = argn(a0 + 3), argn(a0 + 4), argn(a0 + 6)
  if c == 0 then consume = false end
  if not st.bad and alg == 't' and st.a and st.b > now + window then st.bad = 3 end
  if st.bad then
    out[base + 1], out[base + 2], out[base + 3], out[base + 4], out[base + 5] = st.bad, 1, 0, 0, 0
    return
  end
  local room, remaining, reset, retry, ttl
  if alg == 'f' then
    local idx = floor(now / window)
    local v, count = st.a, 0
    if v and floor(v / FW) == idx % 100000 then count = v % FW end
    local wend = (idx + 1) * window - now
    room = c == 0 or count + c <= max
    if room then
      remaining, reset, retry = max_of(0, max - count - c), wend, 0
      if consume then
        if count == 0 then st.fresh = true end
        st.a, ttl = (idx % 100000) * FW + count + c, wend
      end
    else
      remaining, reset, retry = max_of(0, max - count), wend, wend
    end
  else
    local cap = argn(a0 + 5) * window
    local units = cap
    if st.a then
      units = st.a
      if now > st.b then units = units + (now - st.b) * max end
      if units > cap then units = cap end
    end
    room = units >= c * window
    if room then units = units - c * window end
    remaining = floor(units / window)
    reset = units >= cap and 0 or floor((cap - units + max - 1) / max)
    retry = room and 0 or floor((c * window - units + max - 1) / max)
    if room and consume then st.a, st.b, ttl = units, now, max_of(1, reset) end
  end
  if ttl then
    if not st.dirty then
      st.dirty = true
      written[#written + 1] = KEYS[k]
    end
    st.ttl = ttl
  end
  out[base + 1], out[base + 2], out[base + 3], out[base + 4], out[base + 5] =
    room and 1 or 0, room and 1 or 0, remaining, reset, retry
end

local k0 = 0   -- keys of the calls before this one
local a0 = 3   -- ARGV index of this call's mode
local base = 1 -- values in out before this call's (the time first)
for _ = 1, argn(1) do
  local n = argn(a0 + 1)
  local mode = ARGV[a0]
  local ok, err, alg = true, nil, n == 1 and #mode == 1 and ARGV[a0 + 2]
  if alg == 'f' or alg == 't' then
    fast(alg, a0, k0 + 1, base, mode == '0')
  elseif #mode > 1 then
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
  a0 = a0 + 2 + 5 * n
  base = base + 1 + 4 * n
end
for j = base + 1, 6 do out[j] = nil end  -- (Fewer values than presized.)

-- Each fixed window and token bucket changed, written once: a fixed window
-- in the window it was read in by INCRBY (keeping its expiry, the window's
-- end), else with SET ... PX; a token bucket with SET ... PX.
for _, key in ipairs(written) do
  local st = state[key]
  if st.b then
    call('SET', key, format('%d %d', st.a, st.b), 'PX', format('%d', st.ttl))
  elseif st.fresh then
    call('SET', key, format('%d', st.a), 'PX', format('%d', st.ttl))
  elseif st.a ~= st.read then
    call('INCRBY', key, format('%d', st.a - st.read))
  end
end
return out
