-- Drops a deleted session from its key space's index, where the delete script cannot (on a
-- Redis Cluster the index lies in another hash slot), unless a save that began after the
-- delete has indexed it since: that save's session stays listed.
--
-- KEYS[1]  the key space's session index (a sorted set)
-- KEYS[2]  the key space's session titles (a hash)
-- ARGV[1]  when the delete began, in ms since the epoch
-- ARGV[2]  the session id
--
-- Returns 1 when dropped, 0 when it was not indexed, -1 when a later save indexed it.
local saved = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]) or '')
if not saved then return 0 end
if saved > tonumber(ARGV[1]) then return -1 end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
