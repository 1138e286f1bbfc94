-- An admin's reset: the article's counts and readers go, it stays listed with 0. The site's
-- pending votes are folded first (see fold.lua), or they would count the article's again
-- afterwards.
--
-- KEYS[1]    counts_key            the article's counts (HASH reaction -> count)
-- KEYS[2]    readers_key           the article's readers (HASH reader -> reaction)
-- KEYS[3]    index_key             the site's articles by total (ZSET)
-- KEYS[4]    imported_key          the site's imported counts (HASH article -> JSON)
-- KEYS[5]    stats_key             the site's total and last vote (HASH)
-- KEYS[6]    pending_key           the site's votes not yet folded (LIST)
-- KEYS[7..]  *reaction_index_keys  the site's articles by each reaction's count (ZSET)
-- ARGV[1]    article               the article's id
-- ARGV[2]    channel               where the reset is announced
-- ARGV[3]    index_prefix          the per-reaction index keys, without the reaction
-- ARGV[4]    day_prefix            the day bucket keys, without the day
-- ARGV[5]    total_prefix          the day total keys, without the day
-- ARGV[6]    retention             seconds a day bucket is kept
--
-- Returns the number of reactions removed.
local counts_key = KEYS[1]
local readers_key = KEYS[2]
local index_key = KEYS[3]
local imported_key = KEYS[4]
local stats_key = KEYS[5]
local pending_key = KEYS[6]
local article = ARGV[1]
local channel = ARGV[2]
local index_prefix = ARGV[3]
local day_prefix = ARGV[4]
local total_prefix = ARGV[5]
local retention = ARGV[6]

fold(pending_key, index_key, stats_key, index_prefix, day_prefix, total_prefix, retention)
local counts = redis.call('HGETALL', counts_key)
local total = 0
for i = 2, #counts, 2 do total = total + tonumber(counts[i]) end
redis.call('DEL', counts_key, readers_key)
redis.call('HDEL', imported_key, article)
redis.call('ZADD', index_key, 0, article)
redis.call('HINCRBY', stats_key, 'total', -total)
for i = 7, #KEYS do redis.call('ZREM', KEYS[i], article) end
redis.call('PUBLISH', channel, '')
return total
