-- Writes a whole session that does not exist (an import), with its expiry, and indexes it.
--
-- KEYS[1]  the session key
-- KEYS[2]  optional: the key space's session index (a sorted set)
-- KEYS[3]  with KEYS[2]: the key space's session titles (a hash)
-- ARGV[1]  the session's JSON text
-- ARGV[2]  its time to live, in ms
-- ARGV[3]  the session id, as the index lists it
-- ARGV[4]  its last save, in ms since the epoch (its score in the index)
-- ARGV[5]  its title ('' for none)
--
-- Returns 1 when written, 0 when the key exists (it is left exactly as it is).
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 0 end
if KEYS[2] then
  redis.call('ZADD', KEYS[2], 'GT', ARGV[4], ARGV[3])
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], ARGV[3], ARGV[5]) end
end
return 1
