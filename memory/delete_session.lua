-- Deletes a session and leaves the time of the delete beside it, so that a save that began
-- before the delete and reaches the store after it does not create the session again (the
-- append script reads the marker only when the session does not exist).
--
-- KEYS[1]  the session key
-- KEYS[2]  its deletion marker
-- ARGV[1]  the time of the delete, in ms since the epoch
-- ARGV[2]  how long the marker is kept, in seconds: longer than any save can be under way
--
-- Returns the number of keys deleted (1, or 0 when there was no session).
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return redis.call('DEL', KEYS[1])
