-- One vote, atomically: move this reader's reaction from the previous choice to the new one
-- (or remove it), note the vote for the statistics (see fold.lua), publish and return the
-- counts. Setting the choice a reader already has changes nothing, so retries never
-- double-count. It first applies the rate limits, so a vote costs one round trip: the
-- client's (address + user agent), then the address's, which no header resets, then the
-- site's. A client over its own limit stops before it spends its address's budget, so one
-- browser cannot use up the allowance of the readers behind its NAT.
--
-- Kept cheap for Redis: increments are passed as strings, because Redis formats a Lua number
-- argument with snprintf, and the counts are published and returned as HGETALL's reply joined
-- by commas (`happy,3,sad,1`, see decode_counts), which costs Redis less than building a JSON
-- object or a nested reply.
--
-- KEYS[1]   counts_key          the article's counts (HASH reaction -> count)
-- KEYS[2]   readers_key         the article's readers (HASH reader -> reaction)
-- KEYS[3]   index_key           the site's articles by total (ZSET)
-- KEYS[4]   meta_key            the site's article records (HASH article -> JSON)
-- KEYS[5]   pending_key         the site's votes not yet folded (LIST, see fold.lua)
-- KEYS[6]   stats_key           the site's total and last vote (HASH)
-- KEYS[7]   client_rate_key     this minute's votes of the client (address + user agent)
-- KEYS[8]   site_rate_key       this second's votes to the site
-- KEYS[9]   new_articles_key    this hour's new articles of the site
-- KEYS[10]  address_rate_key    this minute's votes of the client's address block
-- KEYS[11]  own_key             the bucket of the reader's own index (HASH field -> numbers)
-- KEYS[12]  article_numbers_key the site's articles by number (HASH number -> article)
-- ARGV[1]   reader              the reader's hash
-- ARGV[2]   wanted              the reaction wanted, '' to take it back
-- ARGV[3]   article             the article's id
-- ARGV[4]   channel             where the new counts are published
-- ARGV[5]   now                 the time, unix seconds in 10 digits
-- ARGV[6]   url                 the article's URL, '' if the vote has none
-- ARGV[7]   title               the article's title, '' if the vote has none
-- ARGV[8]   retention           seconds a day bucket is kept
-- ARGV[9]   client_limit        votes a client may send the site per minute
-- ARGV[10]  site_limit          votes the site may take per second
-- ARGV[11]  new_articles_limit  new articles the site may gain per hour
-- ARGV[12]  day                 today (UTC, yyyy-mm-dd)
-- ARGV[13]  index_prefix        the per-reaction index keys, without the reaction
-- ARGV[14]  day_prefix          the day bucket keys, without the day
-- ARGV[15]  total_prefix        the day total keys, without the day
-- ARGV[16]  fold_at             how many pending votes start a fold
-- ARGV[17]  origin              the origin of the page the vote came from, '' for the server
-- ARGV[18]  address_limit       votes an address block may send the site per minute
-- ARGV[19]  own_field           the reader's field in own_key
--
-- Returns {previous, counts}, or {'!', scope, seconds to wait} when over a limit.
local counts_key = KEYS[1]
local readers_key = KEYS[2]
local index_key = KEYS[3]
local meta_key = KEYS[4]
local pending_key = KEYS[5]
local stats_key = KEYS[6]
local client_rate_key = KEYS[7]
local site_rate_key = KEYS[8]
local new_articles_key = KEYS[9]
local address_rate_key = KEYS[10]
local own_key = KEYS[11]
local article_numbers_key = KEYS[12]
local reader = ARGV[1]
local wanted = ARGV[2]
local article = ARGV[3]
local channel = ARGV[4]
local now = ARGV[5]
local url = ARGV[6]
local title = ARGV[7]
local retention = ARGV[8]
local client_limit = ARGV[9]
local site_limit = ARGV[10]
local new_articles_limit = ARGV[11]
local day = ARGV[12]
local index_prefix = ARGV[13]
local day_prefix = ARGV[14]
local total_prefix = ARGV[15]
local fold_at = ARGV[16]
local origin = ARGV[17]
local address_limit = ARGV[18]
local own_field = ARGV[19]

local function limited(key, limit, window)
  local used = redis.call('INCR', key)
  if used == 1 then redis.call('EXPIRE', key, window) end
  if used > limit then
    local ttl = redis.call('TTL', key)
    return ttl > 0 and ttl or window
  end
  return nil
end
local wait = limited(client_rate_key, tonumber(client_limit), 60)
if wait then return {'!', 'client', wait} end
wait = limited(address_rate_key, tonumber(address_limit), 60)
if wait then return {'!', 'address', wait} end
wait = limited(site_rate_key, tonumber(site_limit), 1)
if wait then return {'!', 'site', wait} end
local previous = redis.call('HGET', readers_key, reader) or ''
if previous ~= wanted then
  local meta = redis.call('HGET', meta_key, article)
  if not meta then
    -- A new article: at most new_articles_limit a site per hour, so strangers cannot flood
    -- Redis.
    wait = limited(new_articles_key, tonumber(new_articles_limit), 3600)
    if wait then return {'!', 'articles', wait} end
  end
  if previous ~= '' then
    if redis.call('HINCRBY', counts_key, previous, '-1') <= 0 then
      redis.call('HDEL', counts_key, previous)
    end
  end
  if wanted ~= '' then
    redis.call('HINCRBY', counts_key, wanted, '1')
    redis.call('HSET', readers_key, reader, wanted)
  else
    redis.call('HDEL', readers_key, reader)
  end
  -- The reader's own index (see mine.lua) names articles by a number, given to an article
  -- when it is first chosen and kept in its record (`"n":12`; a title's quotes are escaped,
  -- so only the record's own member matches).
  local number = meta and string.match(meta, '"n":(%d+)')
  local numbered = false
  if not number and wanted ~= '' then
    number = tostring(redis.call('HINCRBY', stats_key, 'numbered', 1))
    redis.call('HSET', article_numbers_key, number, article)
    numbered = true
  end
  if number then
    local list = redis.call('HGET', own_key, own_field)
    local listed = list and string.find(',' .. list .. ',', ',' .. number .. ',', 1, true)
    if wanted ~= '' and not listed then
      redis.call('HSET', own_key, own_field, list and (list .. ',' .. number) or number)
    elseif wanted == '' and listed then
      local kept = {}
      for n in string.gmatch(list, '[^,]+') do
        if n ~= number then kept[#kept + 1] = n end
      end
      if #kept == 0 then redis.call('HDEL', own_key, own_field)
      else redis.call('HSET', own_key, own_field, table.concat(kept, ',')) end
    end
  end
  if not meta then
    redis.call('HSET', meta_key, article, cjson.encode(
      {url = url, title = title, first_seen = tonumber(now), n = tonumber(number)}))
  elseif numbered or url ~= '' or title ~= '' then
    -- A title or URL the article has is replaced only by a vote from its URL's origin; one
    -- it lacks, any vote from an allowed page fills in.
    local m = cjson.decode(meta)
    local known_url, known_title = m.url or '', m.title or ''
    local own = origin ~= '' and known_url ~= ''
      and string.lower(string.match(known_url, '^%a+://[^/?#]*') or '') == origin
    local changed = numbered
    if numbered then m.n = tonumber(number) end
    if url ~= '' and url ~= known_url and (own or known_url == '') then
      m.url, changed = url, true
    end
    if title ~= '' and title ~= known_title and (own or known_title == '') then
      m.title, changed = title, true
    end
    if changed then redis.call('HSET', meta_key, article, cjson.encode(m)) end
  end
  local line = now .. ' ' .. day .. ' ' .. previous .. ' ' .. wanted .. ' ' .. article
  if redis.call('RPUSH', pending_key, line) >= tonumber(fold_at) then
    fold(pending_key, index_key, stats_key, index_prefix, day_prefix, total_prefix, retention)
  end
end
local counts = table.concat(redis.call('HGETALL', counts_key), ',')
if previous ~= wanted then redis.call('PUBLISH', channel, counts) end
return {previous, counts}
