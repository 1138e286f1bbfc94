-- Starting counts from another system (e.g. a WordPress export), idempotent: the counts
-- imported last time are remembered, and only the difference is applied, so importing the
-- same file twice changes nothing and live reactions are kept. Changed counts are published
-- as a vote's are, so every server's cached counts and open bars follow at once, whichever
-- process ran the import.
--
-- KEYS[1]    counts_key            the article's counts (HASH reaction -> count)
-- KEYS[2]    index_key             the site's articles by total (ZSET)
-- KEYS[3]    meta_key              the site's article records (HASH article -> JSON)
-- KEYS[4]    imported_key          the site's imported counts (HASH article -> JSON)
-- KEYS[5]    stats_key             the site's total and last vote (HASH)
-- KEYS[6..]  *reaction_index_keys  the index of each reaction of ARGV[7..], in that order
-- ARGV[1]    article               the article's id
-- ARGV[2]    now                   the time, unix seconds (the article's first_seen if new)
-- ARGV[3]    url                   the article's URL, '' to keep the one it has
-- ARGV[4]    title                 the article's title, '' to keep the one it has
-- ARGV[5]    imported              the counts to import (JSON reaction -> count)
-- ARGV[6]    channel               where changed counts are published
-- ARGV[7..]  *reactions            the site's reaction ids, retired ones too
--
-- Returns the change in the article's total.
local counts_key = KEYS[1]
local index_key = KEYS[2]
local meta_key = KEYS[3]
local imported_key = KEYS[4]
local stats_key = KEYS[5]
local article = ARGV[1]
local now = ARGV[2]
local url = ARGV[3]
local title = ARGV[4]
local imported = ARGV[5]
local channel = ARGV[6]

local wanted = cjson.decode(imported)
local before = cjson.decode(redis.call('HGET', imported_key, article) or '{}')
local delta_total, changed = 0, false
for i = 7, #ARGV do
  local reaction = ARGV[i]
  local delta = (tonumber(wanted[reaction]) or 0) - (tonumber(before[reaction]) or 0)
  if delta ~= 0 then
    if redis.call('HINCRBY', counts_key, reaction, delta) <= 0 then
      redis.call('HDEL', counts_key, reaction)
    end
    redis.call('ZINCRBY', KEYS[i - 1], delta, article)
    delta_total = delta_total + delta
    changed = true
  end
end
redis.call('ZINCRBY', index_key, delta_total, article)
redis.call('HINCRBY', stats_key, 'total', delta_total)
local meta = redis.call('HGET', meta_key, article)
local m = meta and cjson.decode(meta) or {first_seen = tonumber(now)}
if url ~= '' then m.url = url end
if title ~= '' then m.title = title end
redis.call('HSET', meta_key, article, cjson.encode(m))
redis.call('HSET', imported_key, article, imported)
if changed then
  redis.call('PUBLISH', channel, table.concat(redis.call('HGETALL', counts_key), ','))
end
return delta_total
