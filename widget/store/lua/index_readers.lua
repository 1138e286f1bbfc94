-- Adds readers of one article to their own index (see mine.lua), for choices made before the
-- index existed: the article gets its number first if it has none. Idempotent, so it may run
-- again, or alongside votes. The caller passes the readers in batches (HSCAN of the article's
-- readers hash), so a popular article never holds Redis in one long call.
--
-- KEYS[1]   meta_key             the site's article records (HASH article -> JSON)
-- KEYS[2]   article_numbers_key  the site's articles by number (HASH number -> article)
-- KEYS[3]   stats_key            the site's total, last vote and last article number (HASH)
-- ARGV[1]   article              the article's id
-- ARGV[2..] *entries             for each reader, its own_key and its own_field
--
-- Returns how many readers were added.
local meta_key = KEYS[1]
local article_numbers_key = KEYS[2]
local stats_key = KEYS[3]
local article = ARGV[1]

local meta = redis.call('HGET', meta_key, article)
local number = meta and string.match(meta, '"n":(%d+)')
if not number then
  number = tostring(redis.call('HINCRBY', stats_key, 'numbered', 1))
  redis.call('HSET', article_numbers_key, number, article)
  local m = meta and cjson.decode(meta) or {}
  m.n = tonumber(number)
  redis.call('HSET', meta_key, article, cjson.encode(m))
end
local added = 0
for i = 2, #ARGV - 1, 2 do
  local key, field = ARGV[i], ARGV[i + 1]
  local list = redis.call('HGET', key, field)
  if not list then
    redis.call('HSET', key, field, number)
    added = added + 1
  elseif not string.find(',' .. list .. ',', ',' .. number .. ',', 1, true) then
    redis.call('HSET', key, field, list .. ',' .. number)
    added = added + 1
  end
end
return added
