-- Appends turns to a session stored as a JSON array of {role, content, timestamp, id},
-- atomically, reading only the value's tail.
--
-- KEYS[1]  the session key
-- KEYS[2]  its deletion marker: the time of its last delete, kept for a while (read only
--          when the session does not exist, or the save began before its newest turn)
-- KEYS[3]  optional: the key space's session index, a sorted set of session ids scored by
--          their last save, where the session's score becomes the save's time
-- KEYS[4]  with KEYS[3]: the key space's session titles, a hash, set when the session is created
-- ARGV[1]  TTL in seconds, reset by every save
-- ARGV[2]  maximum size of the stored value, in bytes
-- ARGV[3]  when the save began, in ms since the epoch: a save that began before the last
--          delete stores nothing (the session was forgotten); its score in the index
-- ARGV[4]  the session id, as the index lists it
-- ARGV[5]  the session's title, if this save creates it ('' for none)
-- ARGV[6]  '1' to look for the turns' ids beyond the newest WINDOW bytes (as far as the widest
--          read, one GETRANGE more) when they are not found there: for ids a caller gave,
--          which may be a retry's, and for the server's own retries; else '0'
-- ARGV[7]  'drop' to drop the oldest turns of a session the save would make too large, else
--          'refuse' (nothing is stored: 'session_full')
-- ARGV[8…] four arguments per new turn, in order:
--            its JSON text up to the timestamp: {"role":"…","content":"…","timestamp":
--            its timestamp, in decimal
--            'keep': the caller chose the timestamp, so an equal stored turn (same role,
--                    content and timestamp, whatever its id) is this turn saved before (a
--                    retry) and it is not stored again;
--            'move': the server's clock chose it, so an equal stored turn is another
--                    message, and the timestamp moves to the next free millisecond
--            its id (ASCII letters, digits and ._:-#): a stored turn with this id is this
--            turn, saved by an earlier attempt, in either mode, and is not stored again
--
-- Returns {outcome, created, dropped, timestamp_1, state_1, timestamp_2, state_2, …}:
--   outcome  'saved'; or, with nothing stored: 'session_full', 'not_a_session' (nothing
--            touched), 'deleted' (the session was deleted after the save began), or
--            'id_taken' (then the second item is the number of the turn whose id a stored
--            turn of other role or content has)
--   created  1 when the key did not exist and this call created it
--   dropped  how many of the oldest turns this save dropped to make room
--   state    1 stored; 0 this turn was already there (nothing stored for it): by its id,
--            or by its text in 'keep' mode; 2 likewise, and that turn is the session's first
--
-- A save reads the value's last WINDOW bytes (GETRANGE). A value shorter than that is
-- read whole: the save checks that it opens a JSON array, and rewrites it (SET … EX).
-- A longer one is extended in place: STRLEN, SETRANGE over the closing bracket, EXPIRE.
-- Its head is not read: a value that ends with ']' after a valid turn is, if it is JSON
-- at all, an array, and one broken before its last turn is appended to by design.
-- Either way the value must end with ']' after a complete, valid last turn (or be an
-- empty array); the new turns go after it without touching a byte before the bracket,
-- and a value that fails the check is left exactly as it is, TTL included. Equal turns
-- (retries, server-stamp collisions) are looked for in the bytes read: the newest
-- WINDOW bytes, or more when the last turn is longer than that. A last turn that does
-- not fit the window widens it, ×8 each time (one GETRANGE more), up to WIDEST or the
-- size limit, whichever is larger.
--
-- Billed commands on Upstash, the EVALSHA included: 3 for a value shorter than WINDOW;
-- for a longer one 5 (4 when nothing is written), plus one per widening. cjson is not
-- documented there, hence the scanner. Its work is bounded whatever the value holds:
-- each step and each byte a pattern reads is charged to WORK, and a value whose check
-- needs more (or more than MAX_TRIES candidates for its last turn's start, MAX_NESTED
-- values under repeated keys, a run of more than SLICE digits) is left alone and
-- answered 'not_a_session'.

local find, byte, sub, format, gsub, reverse = string.find, string.byte, string.sub, string.format,
  string.gsub, string.reverse

local MAX_SAFE_INTEGER = 9007199254740991
local MAX_DEPTH = 200 -- nesting of values under a repeated key before we give up
local WINDOW = 32768 -- bytes read from the value's end; retries are recognised within them
local WIDEST = 1048576 -- a last turn longer than this (or than the size limit) is not looked for
-- The check's work is counted in units of about 10 ns of Valkey's Lua: a step of the
-- scanner (a few Lua calls) is STEP, a byte a pattern reads 2 or 3.
local WORK = 1000000
local STEP = 120
local SLICE = 256 -- runs of spaces, digits and backslashes are read this many bytes at a time

local MAX_TRIES = 64 -- candidates for the last turn's start that may fail before we give up
-- Values inside arrays and objects under a repeated key (which JSON.parse discards, and
-- JSON.stringify never writes) that the check reads before it gives up.
local MAX_NESTED = 1000

local work, tries, nested = WORK, 0, 0
local TOO_MUCH = {} -- raised when the check has used its WORK
local WIDEN = {} -- the last turn may begin before the bytes read

local function charge(units)
  work = work - units
  if work < 0 then error(TOO_MUCH) end
end

-- The index after the run of characters that `pattern` ('^[…]*') matches from i, read a
-- slice at a time so that a long run is paid for as it is read.
local function span(s, i, pattern)
  while true do
    local _, e = find(sub(s, i, i + SLICE - 1), pattern)
    charge(STEP + 3 * e)
    if e < SLICE then return i + e end
    i = i + SLICE
  end
end

local SPACE, DIGITS = '^[ \t\n\r]*', '^%d*'

local function skip_space(s, i)
  local c = byte(s, i)
  if c ~= 32 and c ~= 9 and c ~= 10 and c ~= 13 then return i end
  return span(s, i, SPACE)
end

local function skip_space_back(s, i)
  local c = byte(s, i)
  if c ~= 32 and c ~= 9 and c ~= 10 and c ~= 13 then return i end
  while i >= 1 do
    local _, e = find(reverse(sub(s, math.max(1, i - SLICE + 1), i)), SPACE)
    charge(STEP + 3 * e)
    i = i - e
    if e < SLICE then return i end
  end
  return i
end

-- Every escape JSON allows, as gsub would meet it in '\\.', and two bytes that stand for
-- it: '\1\1' for a complete one, '\2\2' for '\u' (four hex digits must follow). An escape
-- missing here keeps its backslash. Strings are masked only once their text is known to
-- hold no control character, or when it will be checked for them (so '\1' and '\2' are free).
local ESCAPES = { ['\\"'] = '\1\1', ['\\\\'] = '\1\1', ['\\/'] = '\1\1', ['\\b'] = '\1\1',
  ['\\f'] = '\1\1', ['\\n'] = '\1\1', ['\\r'] = '\1\1', ['\\t'] = '\1\1', ['\\u'] = '\2\2' }

-- `masked` (a string's text, its escapes masked) held only valid escapes.
local function valid_masked(masked)
  if find(masked, '\\', 1, true) then return false end
  if not find(masked, '\2', 1, true) then return true end
  charge(2 * #masked)
  return not find(gsub(masked, '\2\2%x%x%x%x', ''), '\2', 1, true)
end

-- Where a string may end at the latest: the end of the turn being checked.
local scan_end = 0

-- s:byte(i) is a quote: the index of the quote that closes the string and whether its
-- escapes were checked, or nil. Without a backslash before the first quote, that quote
-- closes it (memchr-fast; the text is checked once the turn parses). Else the escapes
-- are masked, from the string's start: the first quote left closes it.
local function closing_quote(s, i)
  charge(STEP)
  local q = find(s, '"', i + 1, true)
  if not q or q > scan_end then return nil end
  if byte(s, q - 1) ~= 92 then return q, false end
  for _, to in ipairs({ math.min(i + SLICE, scan_end), scan_end }) do
    local text = sub(s, i + 1, to)
    charge(STEP + 2 * #text)
    local masked = gsub(text, '\\.', ESCAPES)
    q = find(masked, '"', 1, true)
    if q then
      if not valid_masked(sub(masked, 1, q - 1)) then return nil end
      return i + q, true
    end
  end
  return nil
end

-- The strings of the candidate turn, as (opening quote, closing quote, escapes checked),
-- their text checked once the turn parses.
local strings = {}

local function end_of_string(s, i)
  local q, checked = closing_quote(s, i)
  if not q then return nil end
  local n = #strings
  strings[n + 1], strings[n + 2], strings[n + 3] = i, q, checked
  return q + 1
end

local simple_escapes = { [34] = '"', [92] = '\\', [47] = '/', [98] = '\b', [102] = '\f',
  [110] = '\n', [114] = '\r', [116] = '\t' }

-- The text between a string's quotes holds only valid escapes: one by one while they are
-- few, the rest in bulk. It holds no control character (checked before).
local function valid_escapes(text)
  local p, count = find(text, '\\', 1, true), 0
  while p do
    charge(STEP)
    local c = byte(text, p + 1)
    if simple_escapes[c] then
      p = p + 2
    elseif c == 117 and find(text, '^%x%x%x%x', p + 2) then
      p = p + 6
    else
      return false
    end
    count = count + 1
    if count == 32 then -- dense escapes: the rest in bulk, from an escape's start
      local rest = sub(text, p)
      charge(2 * #rest)
      return valid_masked(gsub(rest, '\\.', ESCAPES))
    end
    p = find(text, '\\', p, true)
  end
  return true
end

-- Control characters JSON allows nowhere (tab, LF and CR: outside strings). Written out:
-- building them costs more than the rest of a short save's setup.
local CONTROLS = { '\0', '\1', '\2', '\3', '\4', '\5', '\6', '\7', '\8', '\11', '\12', '\14',
  '\15', '\16', '\17', '\18', '\19', '\20', '\21', '\22', '\23', '\24', '\25', '\26', '\27',
  '\28', '\29', '\30', '\31' }

-- The strings of the turn s[first..last] hold no control character and only valid escapes.
local function valid_strings(s, first, last)
  local turn = sub(s, first, last)
  charge(STEP * #CONTROLS + #turn / 4)
  for _, control in ipairs(CONTROLS) do
    if find(turn, control, 1, true) then return false end
  end
  local spaced = find(turn, '\t', 1, true) or find(turn, '\n', 1, true) or find(turn, '\r', 1, true)
  local escaped = find(turn, '\\', 1, true)
  if not spaced and not escaped then return true end
  for k = 1, #strings, 3 do
    charge(STEP)
    local text = sub(s, strings[k] + 1, strings[k + 1] - 1)
    if spaced and (find(text, '\t', 1, true) or find(text, '\n', 1, true) or find(text, '\r', 1, true)) then
      return false
    end
    if escaped and not strings[k + 2] and find(text, '\\', 1, true) and not valid_escapes(text) then
      return false
    end
  end
  return true
end

-- The text of a string that can only matter if it is short and ASCII (a key or a
-- role): escapes of ASCII characters resolved, anything else made unmatchable.
local function ascii_text(s, i, j)
  if j - i - 2 > 64 then return '' end
  local raw = sub(s, i + 1, j - 2)
  if not find(raw, '\\', 1, true) then return raw end
  raw = raw:gsub('\\u(%x%x%x%x)', function(hex)
    local code = tonumber(hex, 16)
    return code < 128 and string.char(code) or '\0'
  end)
  return (raw:gsub('\\(.)', function(c) return simple_escapes[byte(c)] or '\0' end))
end

-- The index after the digits from i. JSON.parse reads numbers of any length; a run of
-- more than SLICE digits, which no writer of turns produces, gives the value up.
local function end_of_digits(s, i)
  local _, e = find(sub(s, i, i + SLICE), DIGITS)
  charge(STEP + 3 * e)
  if e > SLICE then error(TOO_MUCH) end
  return i + e
end

local function end_of_number(s, i)
  local j = i
  if byte(s, j) == 45 then j = j + 1 end
  local first = byte(s, j)
  if not first or first < 48 or first > 57 then return nil end
  local e = end_of_digits(s, j)
  if first == 48 and e > j + 1 then return nil end
  if byte(s, e) == 46 then
    local f = end_of_digits(s, e + 1)
    if f == e + 1 then return nil end
    e = f
  end
  local c = byte(s, e)
  if c == 101 or c == 69 then
    local k = e + 1
    c = byte(s, k)
    if c == 43 or c == 45 then k = k + 1 end
    local f = end_of_digits(s, k)
    if f == k then return nil end
    e = f
  end
  return e
end

local literals = { [116] = 'true', [102] = 'false', [110] = 'null' }

local end_of_value

local function end_of_members(s, i, depth, close, keyed)
  i = skip_space(s, i + 1)
  if byte(s, i) == close then return i + 1 end
  while true do
    charge(STEP)
    nested = nested + 1
    if nested > MAX_NESTED then error(TOO_MUCH) end
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
  local literal = literals[c]
  if literal then
    if sub(s, i, i + #literal - 1) == literal then return i + #literal end
    return nil
  end
  return end_of_number(s, i)
end

local function valid_timestamp(text)
  if not find(text, '^%-?%d') then return false end
  local n = tonumber(text)
  return n ~= nil and n == math.floor(n) and n >= 0 and n <= MAX_SAFE_INTEGER
end

-- s:byte(i) is '{': the index after the object if it is a valid turn, else nil (its
-- strings' text is checked by valid_strings). As with JSON.parse, a repeated key keeps
-- its last value; only that one must be valid.
local function end_of_turn(s, i)
  local valid = {}
  i = skip_space(s, i + 1)
  while true do
    charge(STEP)
    if byte(s, i) ~= 34 then return nil end
    local name_end = end_of_string(s, i)
    if not name_end then return nil end
    local name = ascii_text(s, i, name_end)
    if name ~= 'role' and name ~= 'content' and name ~= 'timestamp' and name ~= 'id' and name ~= 'dropped' then
      return nil
    end
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
    elseif name == 'id' then
      valid.id = first == 34 or first == 110 -- a string, or null (what else end_of_value takes)
    elseif name == 'dropped' then
      valid.dropped = first == 110 or valid_timestamp(sub(s, value_start, i - 1))
    else
      valid.timestamp = valid_timestamp(sub(s, value_start, i - 1))
    end
    i = skip_space(s, i)
    local c = byte(s, i)
    if c == 125 then
      if valid.role and valid.content and valid.timestamp and valid.id ~= false and valid.dropped ~= false then
        return i + 1
      end
      return nil
    end
    if c ~= 44 then return nil end
    i = skip_space(s, i + 1)
  end
end

-- Whether the turn ending at `last` starts at `start`: nil when `start` is not even a
-- candidate, a '{' between ',' (or the array's opening bracket: `open` when the head was
-- read, else any '[') and a quote; else whether it parses as a valid turn ending exactly there.
local function starts_last_turn(s, start, last, open)
  local before = skip_space_back(s, start - 1)
  local c = byte(s, before)
  if c ~= 44 and not (open and before == open) and not (not open and c == 91) then return nil end
  if byte(s, skip_space(s, start + 1)) ~= 34 then return nil end
  strings, scan_end = {}, last
  return end_of_turn(s, start) == last + 1 and valid_strings(s, start, last)
end

-- The turn that ends at `last` begins at a '{'. In valid JSON a '{' inside a string never
-- parses to end there, so only the bytes the turn spans matter. Candidates are tried from
-- the end, so the last turn is usually the first tried: first '{"' (JSON.stringify's
-- layout; inside a string a quote is escaped, so '{"' only occurs where a string ends
-- with '{'), then any other '{' (spaced layouts), near the end and then in all of `s`.
-- After MAX_TRIES candidates that fail, the value is given up.
local function has_last_turn(s, last, open)
  local floor = open and open + 1 or 1
  local near = math.max(floor, last - 1024)
  local starts = {}
  for _, stage in ipairs({ { near, last }, { floor, near } }) do
    local from, to = stage[1], stage[2]
    for _, needle in ipairs({ '{"', '{' }) do
      local count = 0
      local at = find(s, needle, from, true)
      while at and at < to do
        charge(STEP)
        if needle == '{"' or byte(s, at + 1) ~= 34 then
          count = count + 1
          starts[count] = at
        end
        at = find(s, needle, at + 1, true)
      end
      for k = count, 1, -1 do
        local found = starts_last_turn(s, starts[k], last, open)
        if found then return true end
        if found == false then
          tries = tries + 1
          if tries > MAX_TRIES then error(TOO_MUCH) end
        end
      end
    end
  end
  return false
end

-- Where new turns go, for a value whose last bytes are `s` (all of it when `whole`): the
-- index of the array's opening bracket (false when not read), of its closing bracket, and
-- whether the array is empty. Nil when the value is not, at its ends, a JSON array of
-- turns; WIDEN when the bytes read cannot tell.
local function append_point(s, whole)
  local open = false
  if whole then
    -- A UTF-8 byte order mark: TextDecoder drops it before JSON.parse reads the rest.
    open = skip_space(s, sub(s, 1, 3) == '\239\187\191' and 4 or 1)
    if byte(s, open) ~= 91 then return nil end
  end
  local close = skip_space_back(s, #s)
  if byte(s, close) ~= 93 or (whole and close <= open) then return nil end
  local last = skip_space_back(s, close - 1)
  if whole and last == open then return open, close, true end
  local c = byte(s, last)
  if c == 125 and has_last_turn(s, last, open) then return open, close, false end
  if whole or (c ~= 125 and c ~= 91 and last >= 1) then return nil end
  return WIDEN
end

local key, marker, ttl, max_bytes, started = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local deep = ARGV[6] == '1'
local drop_oldest = ARGV[7] == 'drop'
local FIRST_TURN = 8

-- A saved session's entry in the index: its last save (never moved back by a save that
-- arrives late), and its title when this save created it.
local function index(created_now)
  if not KEYS[3] then return end
  redis.call('ZADD', KEYS[3], 'GT', ARGV[3], ARGV[4])
  if created_now and ARGV[5] ~= '' then redis.call('HSET', KEYS[4], ARGV[4], ARGV[5]) end
end

local value = redis.call('GETRANGE', key, -WINDOW, -1)
local short = #value < WINDOW -- the whole value ('' for a missing key)
local length = #value
if not short then length = redis.call('STRLEN', key) end
local created = value == '' -- or an empty string, which is not a session: SET NX tells
local open, close, empty
if created then
  local deleted = tonumber(redis.call('GET', marker) or '')
  if deleted and started < deleted then return { 'deleted', 0 } end
  value, open, close, empty = '[]', 1, 2, true
else
  local widest = math.max(WIDEST, max_bytes)
  while true do
    local ok, found, found_close, found_empty = pcall(append_point, value, #value == length)
    if not ok then
      if found == TOO_MUCH then return { 'not_a_session', 0 } end
      error(found, 0)
    end
    if found ~= WIDEN then
      if found == nil then return { 'not_a_session', 0 } end
      open, close, empty = found, found_close, found_empty
      break
    end
    if #value >= widest then return { 'not_a_session', 0 } end
    value = redis.call('GETRANGE', key, -math.min(8 * #value, widest), -1)
  end
end

-- A save that began before the last delete belongs to the conversation that was forgotten:
-- it is refused even where a newer save has created the session again. The marker is read
-- only when the session does not exist, or when the save began before its newest turn was
-- stamped (a save that arrives late, or one racing another); other saves do not pay for it.
if not created then
  local near_end, newest, from = sub(value, -256), nil, 1
  while true do
    local _, e, digits = find(near_end, '"timestamp":(%d+)', from)
    if not e then break end
    newest, from = tonumber(digits), e + 1
  end
  if newest and started < newest then
    local deleted = tonumber(redis.call('GET', marker) or '')
    if deleted and started < deleted then return { 'deleted', 0 } end
  end
end

-- Stored turns are found by a plain search for their exact text. A needle that starts
-- with '{"' or ',"' cannot occur inside an encoded string (quotes there are escaped), so a
-- match is always where JSON.stringify's layout puts it: a turn's start, or its id's.

-- The stored turn that ends with `suffix` (its id and closing brace) at `at`: its timestamp,
-- and where it starts, or nil when its role or content differ from `prefix`'s.
local function digits_before(s, at)
  local first, c = at - 1, byte(s, at - 1)
  while c and c >= 48 and c <= 57 do
    first = first - 1
    c = byte(s, first)
  end
  return first
end

local function turn_with_id(s, prefix, at)
  local first = digits_before(s, at)
  if sub(s, first - 10, first) == ',"dropped":' then -- a first turn's count, after its timestamp
    at = first - 10
    first = digits_before(s, at)
  end
  local stamp = tonumber(sub(s, first + 1, at - 1))
  local start = first + 1 - #prefix
  -- A turn that began before the bytes read is compared as far as they go.
  local head = math.max(1, start)
  if not stamp or sub(s, head, first) ~= sub(prefix, head - start + 1) then return nil end
  return stamp, start
end

-- The bytes before those read, up to the widest a save reads (and a little of what was read,
-- so that no id is cut in two), read once, when a turn with an id a caller gave is not among
-- the newest WINDOW bytes: a retry whose first attempt lies further back.
local older = nil
local function bytes_before()
  if older == nil then
    older = short and '' or redis.call('GETRANGE', key, -math.max(WIDEST, max_bytes), 255 - #value)
  end
  return older
end

-- Whether the bytes read hold `text` followed by the end of a turn or its id.
local function holds_turn(text)
  local at = find(value, text, 1, true)
  while at do
    local c = byte(value, at + #text)
    if c == 125 or c == 44 then return at end
    at = find(value, text, at + 1, true)
  end
  return nil
end

-- Makes room by dropping the session's oldest turns, in JSON.stringify's layout: the value is
-- read whole and rewritten as its newest turns that fit, with the new ones, in three quarters of
-- the limit, so that this happens rarely. The first turn kept carries, after its timestamp, how
-- many turns were dropped before it (all drops so far), which readers report. Nil, with nothing
-- written, when no turn boundary of that layout can be found where the cut must be.
local BOUNDARY = ',{"role":"'
local function drop_oldest_turns(tail)
  local whole = short and value or redis.call('GET', key)
  local open_at = find(whole, '[', 1, true)
  local last = skip_space_back(whole, skip_space_back(whole, #whole) - 1)
  local budget = math.floor(max_bytes * 3 / 4) - #tail - 1 -- for the turns kept, after '['
  local from = last + 1 - budget -- the first byte a kept turn may start at
  local cut = nil -- the first kept turn's start; nil: none is kept
  if from <= last then
    local comma = find(whole, BOUNDARY, math.max(from - 1, open_at), true)
    if comma and comma < last then
      cut = comma + 1
    elseif not find(whole, BOUNDARY, open_at, true) and not find(whole, '^%[%s*{"role":"', open_at) then
      return nil -- another writer's layout: where its turns start is not known here
    end
  end
  local gone = sub(whole, open_at, (cut or last + 1) - 1)
  local _, count = gsub(gone, '{"role":"', '')
  -- The count the first turn dropped carries (a raw quote cannot be inside a string).
  local first_turn = sub(gone, 1, find(gone, BOUNDARY, 1, true) or #gone)
  local _, _, before = find(first_turn, '"timestamp":%d+,"dropped":(%d+)')
  local total = count + (tonumber(before) or 0)
  local kept = cut and sub(whole, cut, last) or ''
  local first_text = kept ~= '' and kept or sub(tail, 1 + (empty and 0 or 1))
  local _, stamp_end = find(first_text, '"timestamp":%d+')
  local marked = first_text -- a timestamp written otherwise ('1e12') gets no count beside it
  if stamp_end then
    marked = sub(first_text, 1, stamp_end) .. ',"dropped":' .. total .. sub(first_text, stamp_end + 1)
  end
  if kept ~= '' then
    redis.call('SET', key, '[' .. marked .. tail, 'EX', ttl)
  else
    redis.call('SET', key, '[' .. marked, 'EX', ttl)
  end
  return count
end

-- Turns of this batch are kept in tables: a string grown turn by turn would be copied
-- again for every turn.
local added, added_texts, added_stamps = {}, {}, {}
local found_by_id, first_new = 0, nil
local reply = { 'saved', created and 1 or 0, 0 }
for n = FIRST_TURN, #ARGV, 4 do
  local prefix, stamp, mode, id = ARGV[n], tonumber(ARGV[n + 1]), ARGV[n + 2], ARGV[n + 3]
  local suffix = ',"id":"' .. id .. '"}'
  local state = 1
  local within, at = value, find(value, suffix, 1, true)
  if not at and deep and not created then
    within = bytes_before()
    at = find(within, suffix, 1, true)
  end
  if at then
    local stored, start = turn_with_id(within, prefix, at)
    if not stored then return { 'id_taken', (n - FIRST_TURN) / 4 } end
    stamp, state = stored, (within == value and open and start == open + 1) and 2 or 0
    found_by_id = found_by_id + 1
  elseif mode == 'keep' then
    local text = prefix .. format('%.0f', stamp)
    at = holds_turn(text)
    if at or added_texts[text] then
      state = (open and at == open + 1) and 2 or 0
    end
  else
    local taken = added_stamps[prefix] or {}
    at = find(value, prefix, 1, true)
    while at do
      local _, e, digits = find(value, '^(%d+)[,}]', at + #prefix)
      if digits then taken[tonumber(digits)] = true end
      at = find(value, prefix, (e or at) + 1, true)
    end
    while taken[stamp] do stamp = stamp + 1 end
    if stamp > MAX_SAFE_INTEGER then return redis.error_reply('ERR timestamp out of range') end
  end
  if state == 1 then
    first_new = first_new or (n - FIRST_TURN) / 4
    local text = prefix .. format('%.0f', stamp)
    added[#added + 1] = text .. suffix
    added_texts[text] = true
    added_stamps[prefix] = added_stamps[prefix] or {}
    added_stamps[prefix][stamp] = true
  end
  reply[#reply + 1] = stamp
  reply[#reply + 1] = state
end

-- A save is stored whole or not at all: some of its turns found by their ids and others new
-- means these ids were given to another save (a batch of other turns under the same id).
if found_by_id > 0 and #added > 0 then
  return { 'id_taken', first_new }
end

if #added == 0 then
  if not created then
    redis.call('EXPIRE', key, ttl)
    index(false)
  end
  return reply
end

local tail = (empty and '' or ',') .. table.concat(added, ',') .. ']'
if created then
  if #tail + 1 > max_bytes then return { 'session_full', 0 } end
  if not redis.call('SET', key, '[' .. tail, 'EX', ttl, 'NX') then return { 'not_a_session', 0 } end
  index(true)
  return reply
end
-- The closing bracket's offset in the stored value, counted from 0.
local at = length - #value + close - 1
-- A value rewritten whole loses its trailing spaces; one extended in place keeps those
-- the new turns do not cover.
if (short and at + #tail or math.max(length, at + #tail)) > max_bytes then
  if not drop_oldest then return { 'session_full', 0 } end
  local dropped = drop_oldest_turns(tail)
  if not dropped then return { 'session_full', 0 } end
  reply[3] = dropped
  index(false)
  return reply
end
if short then
  redis.call('SET', key, sub(value, 1, close - 1) .. tail, 'EX', ttl)
else
  redis.call('SETRANGE', key, at, tail)
  redis.call('EXPIRE', key, ttl)
end
index(false)
return reply
