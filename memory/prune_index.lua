-- Drops expired sessions from a key space's session index and titles: those last saved at or
-- before ARGV[1] (ms), at most ARGV[2] of them. Returns how many it dropped.
--
-- KEYS[1]  the session index (a sorted set)
-- KEYS[2]  the session titles (a hash)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
return #gone
