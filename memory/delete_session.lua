-- Deletes a session and leaves the time of the delete beside it, so that a save that began
-- before the delete and reaches the store after it does not create the session again (the
-- append script reads the marker only when the session does not exist); drops it from the
-- key space's session index.
--
-- KEYS[1]  the session key
-- KEYS[2]  its deletion marker
-- KEYS[3]  optional: the key space's session index (a sorted set)
-- KEYS[4]  with KEYS[3]: the key space's session titles (a hash)
-- ARGV[1]  when the delete began, in ms since the epoch
-- ARGV[2]  how long the marker is kept, in seconds: longer than any save can be under way
-- ARGV[3]  the session id, as the index lists it
--
-- Returns the number of keys deleted (1, or 0 when there was no session), or -1 when a save that
-- began after the delete has already landed (the index says when the last save began): the
-- delete is then out of date (a request held past its deadline, or one racing that save), and
-- deletes nothing rather than that save's turns.
if KEYS[3] then
  local saved = tonumber(redis.call('ZSCORE', KEYS[3], ARGV[3]) or '')
  if saved and saved > tonumber(ARGV[1]) then return -1 end
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
if KEYS[3] then
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('HDEL', KEYS[4], ARGV[3])
end
return redis.call('DEL', KEYS[1])
