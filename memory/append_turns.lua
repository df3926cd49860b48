-- Appends turns to a session stored as a JSON array of {role, content, timestamp},
-- atomically, reading only the value's two ends.
--
-- KEYS[1]  the session key
-- ARGV[1]  TTL in seconds, reset by every save
-- ARGV[2]  maximum size of the stored value, in bytes
-- ARGV[3…] three arguments per new turn, in order:
--            its JSON text up to the timestamp: {"role":"…","content":"…","timestamp":
--            its timestamp, in decimal
--            'keep': the caller chose the timestamp, so an equal stored turn is this
--                    turn saved before (a retry) and it is not stored again;
--            'move': the server's clock chose it, so an equal stored turn is another
--                    message, and the timestamp moves to the next free millisecond
--
-- Returns {outcome, created, timestamp_1, state_1, timestamp_2, state_2, …}:
--   outcome  'saved', 'session_full' (nothing stored) or 'not_a_session' (nothing touched)
--   created  1 when the key did not exist and this call created it
--   state    1 stored; 0 an equal turn was already there (nothing stored for it);
--            2 likewise, and that turn is the session's first
--
-- The work is proportional to the new turns and the stored value's last turn, plus
-- one plain (memchr-speed) search of the value for equal turns: the value's middle is
-- never parsed. A save checks that the value opens a JSON array and ends with a
-- complete, valid turn (or is an empty array), and appends after it without touching
-- a byte before its closing bracket. Anything else is left exactly as it is.
--
-- At most two redis.call()s run (GET, then SET or EXPIRE), so a save is billed as at
-- most three commands on Upstash. cjson is not documented there, hence the scanner.

local find, byte, sub, format = string.find, string.byte, string.sub, string.format

local MAX_SAFE_INTEGER = 9007199254740991
local MAX_DEPTH = 200 -- nesting of values under a repeated key before we give up

local function skip_space(s, i)
  local _, e = find(s, '^[ \t\n\r]*', i)
  return e + 1
end

local function skip_space_back(s, i)
  local c = byte(s, i)
  while c == 32 or c == 9 or c == 10 or c == 13 do
    i = i - 1
    c = byte(s, i)
  end
  return i
end

local simple_escapes = { [34] = '"', [92] = '\\', [47] = '/', [98] = '\b', [102] = '\f',
  [110] = '\n', [114] = '\r', [116] = '\t' }

-- s:byte(i) is a quote: the index after the string's closing quote, or nil.
local function end_of_string(s, i)
  i = i + 1
  while true do
    local _, e = find(s, '^[^"\\%z\1-\31]*', i)
    local c = byte(s, e + 1)
    if c == 34 then return e + 2 end
    if c ~= 92 then return nil end -- a control character, or the end of the value
    local escaped = byte(s, e + 2)
    if escaped == 117 then
      if not find(s, '^%x%x%x%x', e + 3) then return nil end
      i = e + 7
    elseif simple_escapes[escaped] then
      i = e + 3
    else
      return nil
    end
  end
end

-- The text of a string that can only matter if it is short and ASCII (a key or a
-- role): escapes of ASCII characters resolved, anything else made unmatchable.
local function ascii_text(s, i, j)
  local raw = sub(s, i + 1, j - 2)
  if not find(raw, '\\', 1, true) then return raw end
  if #raw > 64 then return '' end
  raw = raw:gsub('\\u(%x%x%x%x)', function(hex)
    local code = tonumber(hex, 16)
    return code < 128 and string.char(code) or '\0'
  end)
  return (raw:gsub('\\(.)', function(c) return simple_escapes[byte(c)] or '\0' end))
end

local function end_of_number(s, i)
  local _, e = find(s, '^%-?%d+', i)
  if not e or find(s, '^%-?0%d', i) then return nil end
  local _, f = find(s, '^%.%d+', e + 1)
  if f then e = f end
  _, f = find(s, '^[eE][-+]?%d+', e + 1)
  if f then e = f end
  return e + 1
end

local end_of_value

local function end_of_members(s, i, depth, close, keyed)
  i = skip_space(s, i + 1)
  if byte(s, i) == close then return i + 1 end
  while true do
    if keyed then
      if byte(s, i) ~= 34 then return nil end
      i = end_of_string(s, i)
      if not i then return nil end
      i = skip_space(s, i)
      if byte(s, i) ~= 58 then return nil end
      i = skip_space(s, i + 1)
    end
    i = end_of_value(s, i, depth)
    if not i then return nil end
    i = skip_space(s, i)
    local c = byte(s, i)
    if c == close then return i + 1 end
    if c ~= 44 then return nil end
    i = skip_space(s, i + 1)
  end
end

-- Any JSON value (a repeated key's earlier value may be anything JSON.parse accepts).
end_of_value = function(s, i, depth)
  local c = byte(s, i)
  if c == 34 then return end_of_string(s, i) end
  if c == 123 or c == 91 then
    if depth >= MAX_DEPTH then return nil end
    return end_of_members(s, i, depth + 1, c + 2, c == 123)
  end
  for _, literal in ipairs({ 'true', 'false', 'null' }) do
    if find(s, '^' .. literal, i) then return i + #literal end
  end
  return end_of_number(s, i)
end

local function valid_timestamp(text)
  if not find(text, '^%-?%d') then return false end
  local n = tonumber(text)
  return n ~= nil and n == math.floor(n) and n >= 0 and n <= MAX_SAFE_INTEGER
end

-- s:byte(i) is '{': the index after the object if it is a valid turn, else nil.
-- As with JSON.parse, a repeated key keeps its last value; only that one must be valid.
local function end_of_turn(s, i)
  local valid = {}
  i = skip_space(s, i + 1)
  while true do
    if byte(s, i) ~= 34 then return nil end
    local name_end = end_of_string(s, i)
    if not name_end then return nil end
    local name = ascii_text(s, i, name_end)
    if name ~= 'role' and name ~= 'content' and name ~= 'timestamp' then return nil end
    i = skip_space(s, name_end)
    if byte(s, i) ~= 58 then return nil end
    local value_start = skip_space(s, i + 1)
    i = end_of_value(s, value_start, 0)
    if not i then return nil end
    local first = byte(s, value_start)
    if name == 'role' then
      local role = first == 34 and ascii_text(s, value_start, i)
      valid.role = role == 'user' or role == 'assistant'
    elseif name == 'content' then
      valid.content = first == 34
    else
      valid.timestamp = valid_timestamp(sub(s, value_start, i - 1))
    end
    i = skip_space(s, i)
    local c = byte(s, i)
    if c == 125 then
      if valid.role and valid.content and valid.timestamp then return i + 1 end
      return nil
    end
    if c ~= 44 then return nil end
    i = skip_space(s, i + 1)
  end
end

-- Where new turns go: the indexes of the array's opening and closing brackets and whether
-- the array is empty, or nil when the value is not, at its ends, a JSON array of turns.
local function append_point(s)
  local _, open = find(s, '^[ \t\n\r]*%[')
  if not open then return nil end
  local close = skip_space_back(s, #s)
  if close <= open or byte(s, close) ~= 93 then return nil end
  local last = skip_space_back(s, close - 1)
  if last == open then return open, close, true end
  if byte(s, last) ~= 125 then return nil end
  -- The last turn starts at a '{' after ',' (or the opening bracket) and parses as a
  -- turn ending exactly at `last`. In valid JSON a '{' inside a string is never
  -- followed by a parse that ends there, so the window only has to hold that turn.
  -- Candidates are tried from the end, so the last turn is usually the first tried.
  local window = 1024
  while true do
    local from = math.max(open + 1, last - window)
    local starts, count = {}, 0
    local start = find(s, '{', from, true)
    while start and start < last do
      count = count + 1
      starts[count] = start
      start = find(s, '{', start + 1, true)
    end
    for k = count, 1, -1 do
      start = starts[k]
      local before = skip_space_back(s, start - 1)
      if (byte(s, before) == 44 or before == open) and end_of_turn(s, start) == last + 1 then
        return open, close, false
      end
    end
    if from == open + 1 then return nil end
    window = window * 4
  end
end

local key, ttl, max_bytes = KEYS[1], ARGV[1], tonumber(ARGV[2])

local value = redis.call('GET', key)
local created = not value
local head, close, empty
if created then
  value, head, close, empty = '[]', 1, 2, true
else
  head, close, empty = append_point(value)
  if not head then return { 'not_a_session', 0 } end
end

-- Equal turns are found by a plain search for their exact text: the needle starts
-- with '{"', which cannot occur inside an encoded string (quotes there are escaped),
-- so a match is always a whole, equal turn in the layout JSON.stringify writes.
local added = {}
local pending = ''
local reply = { 'saved', created and 1 or 0 }
local stored_any = false
for n = 3, #ARGV, 3 do
  local prefix, stamp, mode = ARGV[n], tonumber(ARGV[n + 1]), ARGV[n + 2]
  local text = prefix .. format('%.0f', stamp) .. '}'
  local state = 1
  if mode == 'keep' then
    local at = find(value, text, 1, true)
    if at or find(pending, text, 1, true) then
      state = (at == head + 1) and 2 or 0
    end
  else
    local taken = {}
    for _, haystack in ipairs({ value, pending }) do
      local at = find(haystack, prefix, 1, true)
      while at do
        local _, e, digits = find(haystack, '^(%d+)}', at + #prefix)
        if digits then taken[tonumber(digits)] = true end
        at = find(haystack, prefix, (e or at) + 1, true)
      end
    end
    while taken[stamp] do stamp = stamp + 1 end
    if stamp > MAX_SAFE_INTEGER then return redis.error_reply('ERR timestamp out of range') end
    text = prefix .. format('%.0f', stamp) .. '}'
  end
  if state == 1 then
    added[#added + 1] = text
    pending = pending .. text
    stored_any = true
  end
  reply[#reply + 1] = stamp
  reply[#reply + 1] = state
end

if not stored_any then
  if not created then redis.call('EXPIRE', key, ttl) end
  return reply
end

local body = table.concat(added, ',')
local separator = empty and '' or ','
if (close - 1) + #separator + #body + 1 > max_bytes then return { 'session_full', 0 } end
redis.call('SET', key, sub(value, 1, close - 1) .. separator .. body .. ']', 'EX', ttl)
return reply
