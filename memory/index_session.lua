-- Puts a session into its key space's index, where the index cannot be updated by the script
-- that wrote the session: on a Redis Cluster the index lies in another hash slot, so it is a
-- second command, sent once the session's own script has succeeded.
--
-- KEYS[1]  the key space's session index (a sorted set)
-- KEYS[2]  the key space's session titles (a hash)
-- ARGV[1]  the session id
-- ARGV[2]  its last save, in ms since the epoch (its score)
-- ARGV[3]  'GT': the score only ever grows (a save that arrives late does not move it back);
--          'NX': set only when the session is not indexed yet
-- ARGV[4]  its title ('' for none)
-- ARGV[5]  'set' to set the title, 'nx' to set it only where none is kept
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2], ARGV[1])
if ARGV[4] ~= '' then
  if ARGV[5] == 'set' then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
  else
    redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[4])
  end
end
return 1
