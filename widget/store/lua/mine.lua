-- A reader's own reactions on a site: list them, or take them back (all, or one article's).
-- The reader's index (own_key) names the articles by number; each is checked against the
-- article's readers hash, so an entry an admin's reset left behind is dropped, not listed.
-- An erase is one atomic step with the counts, as a take-back vote is: each count goes down
-- once (and never below 0), the choice leaves the article's readers, a pending line keeps
-- the statistics exact (see fold.lua), and the article's new counts are published.
--
-- KEYS[1]   own_key              the bucket of the reader's own index (HASH field -> numbers)
-- KEYS[2]   article_numbers_key  the site's articles by number (HASH number -> article)
-- KEYS[3]   meta_key             the site's article records (HASH article -> JSON)
-- KEYS[4]   index_key            the site's articles by total (ZSET)
-- KEYS[5]   pending_key          the site's votes not yet folded (LIST, see fold.lua)
-- KEYS[6]   stats_key            the site's total and last vote (HASH)
-- KEYS[7]   own_rate_key         this minute's reads and erases of the client's address block
-- ARGV[1]   own_field            the reader's field in own_key
-- ARGV[2]   reader               the reader's hash
-- ARGV[3]   erase                '1' to take the reactions back, '' to list them
-- ARGV[4]   only                 the one article to take back, '' for every one
-- ARGV[5]   counts_prefix        the counts keys, without the article
-- ARGV[6]   readers_prefix       the readers keys, without the article
-- ARGV[7]   channel_prefix       the article channels, without the article
-- ARGV[8]   now                  the time, unix seconds in 10 digits
-- ARGV[9]   day                  today (UTC, yyyy-mm-dd)
-- ARGV[10]  own_limit            reads and erases an address block may make per minute
-- ARGV[11]  index_prefix         the per-reaction index keys, without the reaction
-- ARGV[12]  day_prefix           the day bucket keys, without the day
-- ARGV[13]  total_prefix         the day total keys, without the day
-- ARGV[14]  retention            seconds a day bucket is kept
-- ARGV[15]  fold_at              how many pending votes start a fold
--
-- Returns {article, reaction, meta JSON or '', counts (`happy,3`, '' when listing)} for each
-- reaction listed or taken back, flat; or {'!', 'own', seconds to wait} when over the limit.
local own_key = KEYS[1]
local article_numbers_key = KEYS[2]
local meta_key = KEYS[3]
local index_key = KEYS[4]
local pending_key = KEYS[5]
local stats_key = KEYS[6]
local own_rate_key = KEYS[7]
local own_field = ARGV[1]
local reader = ARGV[2]
local erase = ARGV[3]
local only = ARGV[4]
local counts_prefix = ARGV[5]
local readers_prefix = ARGV[6]
local channel_prefix = ARGV[7]
local now = ARGV[8]
local day = ARGV[9]
local own_limit = ARGV[10]
local index_prefix = ARGV[11]
local day_prefix = ARGV[12]
local total_prefix = ARGV[13]
local retention = ARGV[14]
local fold_at = ARGV[15]

local used = redis.call('INCR', own_rate_key)
if used == 1 then redis.call('EXPIRE', own_rate_key, 60) end
if used > tonumber(own_limit) then
  local ttl = redis.call('TTL', own_rate_key)
  return {'!', 'own', ttl > 0 and ttl or 60}
end

local list = redis.call('HGET', own_key, own_field)
if not list then return {} end
local found, kept = {}, {}
local folding = false
for number in string.gmatch(list, '[^,]+') do
  local article = redis.call('HGET', article_numbers_key, number)
  local reaction = article and redis.call('HGET', readers_prefix .. article, reader)
  if reaction and erase == '1' and (only == '' or only == article) then
    redis.call('HDEL', readers_prefix .. article, reader)
    local counts_key = counts_prefix .. article
    if redis.call('HINCRBY', counts_key, reaction, '-1') <= 0 then
      redis.call('HDEL', counts_key, reaction)
    end
    local line = now .. ' ' .. day .. ' ' .. reaction .. '  ' .. article
    folding = redis.call('RPUSH', pending_key, line) >= tonumber(fold_at) or folding
    local counts = table.concat(redis.call('HGETALL', counts_key), ',')
    redis.call('PUBLISH', channel_prefix .. article, counts)
    local meta = redis.call('HGET', meta_key, article) or ''
    found[#found + 1] = {article, reaction, meta, counts}
  elseif reaction then
    kept[#kept + 1] = number
    if erase ~= '1' then
      found[#found + 1] = {article, reaction, redis.call('HGET', meta_key, article) or '', ''}
    end
  end
end
if #kept == 0 then redis.call('HDEL', own_key, own_field)
elseif #kept < select(2, string.gsub(list, ',', '')) + 1 then
  redis.call('HSET', own_key, own_field, table.concat(kept, ','))
end
if folding then
  fold(pending_key, index_key, stats_key, index_prefix, day_prefix, total_prefix, retention)
end
local flat = {}
for i = 1, #found do
  for j = 1, 4 do flat[#flat + 1] = found[i][j] end
end
return flat
