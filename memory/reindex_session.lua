-- Puts one session that the index does not know (the TypeScript layer wrote it) into its key
-- space's index, unless it was deleted meanwhile: a reindex runs while servers save and delete.
--
-- KEYS[1]  the session key
-- KEYS[2]  optional: the key space's session index (a sorted set)
-- KEYS[3]  with KEYS[2]: the key space's session titles (a hash)
-- ARGV[1]  the session id
-- ARGV[2]  the TTL a save gives, in ms: the session's last save is when its TTL was that long
-- ARGV[3]  its title ('' for none), kept only where the index has none
--
-- Returns 1 when the session was indexed, 0 when the key holds no string any more; without
-- KEYS[2] (on a Redis Cluster, where the index lies in another hash slot), {score, mode} for
-- the index's own script instead of 1 (see index_session.lua). The time is
-- the store's, read beside the TTL left: a clock read before the request left would date the
-- save earlier by however long the request took.
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return 0 end
local clock = redis.call('TIME')
local now, ttl = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000), tonumber(ARGV[2])
local left = redis.call('PTTL', KEYS[1])
local saved = now
if left > 0 and left < ttl then saved = now - (ttl - left) end
-- A key without a TTL tells nothing of its last save: dated now the first time, then left alone.
local mode = left < 0 and 'NX' or 'GT'
if not KEYS[2] then return { saved, mode } end
redis.call('ZADD', KEYS[2], mode, saved, ARGV[1])
if ARGV[3] ~= '' then redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[3]) end
return 1
