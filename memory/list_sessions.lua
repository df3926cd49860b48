-- One page of a key space's session index, most recently saved first, with the titles.
--
-- KEYS[1]  the session index: a sorted set of session ids scored by their last save (ms)
-- KEYS[2]  the session titles: a hash
-- ARGV[1]  sessions last saved at or before this (ms) have expired and are left out
-- ARGV[2]  how many sessions the page holds
-- ARGV[3]  '' for the first page; else the score of the last session of the previous page
-- ARGV[4]  and its id: the page starts after it (ties on the score go by id, descending,
--          as the sorted set orders them in reverse)
--
-- Returns {more, id_1, score_1, title_1, …}: more is 1 when sessions follow the page; a
-- title is false when none is kept.
local index, titles = KEYS[1], KEYS[2]
local live_after, limit = ARGV[1], tonumber(ARGV[2])
local highest, after_score, after_id = '+inf', nil, nil
if ARGV[3] ~= '' then
  highest, after_score, after_id = ARGV[3], tonumber(ARGV[3]), ARGV[4]
end

-- One more than the page, to know whether more follow; read again past ties already seen.
local ids, scores, offset = {}, {}, 0
while #ids <= limit do
  local batch = redis.call('ZREVRANGEBYSCORE', index, highest, '(' .. live_after, 'WITHSCORES',
    'LIMIT', offset, limit + 1)
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    if not after_id or tonumber(score) < after_score or id < after_id then
      ids[#ids + 1], scores[#scores + 1] = id, score
      if #ids > limit then break end
    end
  end
  if #batch < 2 * (limit + 1) then break end
  offset = offset + limit + 1
end

local more = #ids > limit and 1 or 0
if more == 1 then ids[#ids], scores[#scores] = nil, nil end
local reply = { more }
if #ids == 0 then return reply end
local names = redis.call('HMGET', titles, unpack(ids))
for i = 1, #ids do
  reply[#reply + 1] = ids[i]
  reply[#reply + 1] = scores[i]
  reply[#reply + 1] = names[i]
end
return reply
