-- Appends one turn to a session stored as a compact JSON array, atomically.
--
-- KEYS[1]  the session key
-- ARGV[1]  the new turn, already serialised as a JSON object
-- ARGV[2]  TTL in seconds, reset by every save
-- ARGV[3]  maximum size of the stored value, in bytes
--
-- Returns {outcome, turn_count}: outcome is "stored", "duplicate",
-- "session_full" or "not_a_session". At most two redis.call()s run, so a save
-- costs at most three billed commands on Upstash (the script plus its calls).
--
-- cjson is not documented on Upstash, so the stored value is checked by a
-- small scanner built on anchored string.find(): it accepts exactly a JSON
-- array of {"role", "content", "timestamp"} objects and never changes a value
-- it does not accept.

local find, byte = string.find, string.byte

local function skip_space(s, i)
  local _, e = find(s, '^[ \t\n\r]*', i)
  return e + 1
end

-- Strings are checked with plain (memchr-speed) searches for quotes and
-- backslashes, and one anchored scan for control characters. Each search
-- result is remembered, so the whole value is read a small, fixed number of
-- times however many strings and escapes it holds.
local next_backslash = 0 -- index of the next '\\' at or after the last search; 0: not searched yet
local clean_from, clean_to = 1, 0 -- a range known to hold no control character

local simple_escape = { [34] = true, [92] = true, [47] = true, [98] = true, [102] = true,
  [110] = true, [114] = true, [116] = true } -- " \ / b f n r t

local function free_of_control_characters(s, from, to)
  if from < clean_from or to > clean_to then
    local _, e = find(s, '^[\32-\255]*', from)
    clean_from, clean_to = from, e
  end
  return to <= clean_to
end

-- s:byte(i) is the opening quote; returns the index after the closing quote.
local function end_of_string(s, i)
  local start = i + 1
  i = start
  local quote = 0
  while true do
    if quote < i then
      quote = find(s, '"', i, true)
      if not quote then return nil end
    end
    if next_backslash ~= math.huge and next_backslash < i then
      next_backslash = find(s, '\\', i, true) or math.huge
    end
    if next_backslash > quote then
      if not free_of_control_characters(s, start, quote - 1) then return nil end
      return quote + 1
    end
    local escaped = byte(s, next_backslash + 1)
    if escaped == 117 then -- \uXXXX
      if not find(s, '^%x%x%x%x', next_backslash + 2) then return nil end
      i = next_backslash + 6
    elseif simple_escape[escaped] then
      i = next_backslash + 2
    else
      return nil
    end
  end
end

-- A timestamp is a JSON integer from 0 to 2^53 - 1 (JavaScript's safe range).
local function end_of_timestamp(s, i)
  local _, e, digits = find(s, '^(%d+)', i)
  if not e or #digits > 16 or (#digits > 1 and byte(digits, 1) == 48) then return nil end
  if tonumber(digits) > 9007199254740991 then return nil end
  return e + 1
end

local function end_of_role(s, i)
  local _, e = find(s, '^"user"', i)
  if not e then _, e = find(s, '^"assistant"', i) end
  return e and e + 1
end

local field_end = { role = end_of_role, content = end_of_string, timestamp = end_of_timestamp }

-- s:byte(i) is '{'; returns the index after the matching '}'. All three fields
-- must be present, in any order; a repeated field is allowed, as JSON.parse
-- (last value wins) and the Python reader accept it.
local function end_of_any_turn(s, i)
  local seen = ''
  i = skip_space(s, i + 1)
  while true do
    local _, e, name = find(s, '^"(%l+)"', i)
    local value_end = name and field_end[name]
    if not value_end then return nil end
    if not find(seen, name, 1, true) then seen = seen .. name end
    i = skip_space(s, e + 1)
    if byte(s, i) ~= 58 then return nil end
    i = skip_space(s, i + 1)
    if name == 'content' and byte(s, i) ~= 34 then return nil end
    i = value_end(s, i)
    if not i then return nil end
    i = skip_space(s, i)
    local c = byte(s, i)
    if c == 125 then
      if #seen ~= 20 then return nil end -- #'role' + #'content' + #'timestamp'
      return skip_space(s, i + 1)
    end
    if c ~= 44 then return nil end
    i = skip_space(s, i + 1)
  end
end

-- The layout this server and JSON.stringify write: {"role":..,"content":..,"timestamp":..}
-- checked with a handful of anchored finds; anything else takes the general path.
local function end_of_compact_turn(s, i)
  local _, e = find(s, '^{"role":"user","content":', i)
  if not e then _, e = find(s, '^{"role":"assistant","content":', i) end
  if not e or byte(s, e + 1) ~= 34 then return nil end
  local j = end_of_string(s, e + 1)
  if not j then return nil end
  _, e = find(s, '^,"timestamp":', j)
  j = e and end_of_timestamp(s, e + 1)
  if not j or byte(s, j) ~= 125 then return nil end
  return skip_space(s, j + 1)
end

local function end_of_turn(s, i)
  return end_of_compact_turn(s, i) or end_of_any_turn(s, i)
end

-- Returns the number of turns and the index of the closing ']', or nil.
local function scan_session(s)
  local i = skip_space(s, 1)
  if byte(s, i) ~= 91 then return nil end
  i = skip_space(s, i + 1)
  local count = 0
  while byte(s, i) ~= 93 do
    if count > 0 then
      if byte(s, i) ~= 44 then return nil end
      i = skip_space(s, i + 1)
    end
    if byte(s, i) ~= 123 then return nil end
    i = end_of_turn(s, i)
    if not i then return nil end
    count = count + 1
  end
  if skip_space(s, i + 1) ~= #s + 1 then return nil end
  return count, i
end

local key, turn, ttl = KEYS[1], ARGV[1], ARGV[2]
local max_bytes = tonumber(ARGV[3])

local value = redis.call('GET', key)
if not value then
  value = '[' .. turn .. ']'
  if #value > max_bytes then return { 'session_full', 0 } end
  redis.call('SET', key, value, 'EX', ttl)
  return { 'stored', 1 }
end

local count, close = scan_session(value)
if not count then return { 'not_a_session', 0 } end

-- A retried save (its first attempt's reply lost) must not store the turn twice.
-- The needle starts with '{"', which cannot occur inside an encoded string
-- (every quote there is escaped), so a match is always a whole, equal turn.
if find(value, turn, 1, true) then
  redis.call('EXPIRE', key, ttl)
  return { 'duplicate', count }
end

local separator = count > 0 and ',' or ''
local updated = string.sub(value, 1, close - 1) .. separator .. turn .. ']'
if #updated > max_bytes then return { 'session_full', count } end
redis.call('SET', key, updated, 'EX', ttl)
return { 'stored', count + 1 }
