-- fold(): applies a site's pending votes to its statistics. Not a script of its own: the
-- scripts that fold (vote, reset, fold_pending) start with this file.
--
-- The admin's statistics (the site's indexes, its total and last vote, the day buckets) take
-- votes in batches. A vote appends one line to the site's pending list in the same atomic step
-- that changes its counts; the lines are folded into the statistics when FOLD_AT of them wait,
-- and before anything reads the statistics (`Store.fold`). At every moment the statistics and
-- the pending lines together are exact, and nothing reads one without the other.
--
-- Why: written by every vote, the statistics were six of its commands and, with Redis's
-- journal of them, about a third of Redis's work for a vote. A fold applies a hundred votes in
-- one command per index entry and day field they touched, so a popular article's hundred votes
-- cost Redis a few commands instead of six hundred (measured: see docs/benchmarks.md,
-- "Statistics folded in batches").
--
-- A pending line is `time day previous wanted article`, the time in 10 digits (ids and days
-- have no space). The per-reaction index and day keys are named from their prefix and the
-- line: a fold may meet yesterday's votes, or a reaction the site has since dropped. All carry
-- the site's hash tag, so on a cluster they live in the calling script's slot.
local function fold(pending, index, stats, index_prefix, day_prefix, total_prefix, retention)
  local lines = redis.call('LRANGE', pending, 0, -1)
  if #lines == 0 then return end
  -- Lines that differ only in their time (10 digits) are the same vote: count each kind
  -- once, and parse only the kinds. This loop is most of a fold's cost.
  local kinds = {}
  for i = 1, #lines do
    local kind = string.sub(lines[i], 12)
    kinds[kind] = (kinds[kind] or 0) + 1
  end
  local last = nil
  for i = #lines, 1, -1 do
    last = string.match(lines[i], '^(%d%d%d%d%d%d%d%d%d%d) ')
    if last then break end
  end
  local by_article, by_reaction, by_day, day_totals = {}, {}, {}, {}
  local total = 0
  local function add(table_, key, field, n)
    local t = table_[key]
    if not t then t = {}; table_[key] = t end
    t[field] = (t[field] or 0) + n
  end
  for kind, n in pairs(kinds) do
    local day, previous, wanted, article = string.match(kind, '^(%S+) (%S*) (%S*) (.*)$')
    if day then  -- a line the vote script wrote (anything else is skipped, not an error)
      local delta = 0
      if previous ~= '' then
        delta = -n
        add(by_reaction, previous, article, -n)
      end
      if wanted ~= '' then
        delta = delta + n
        add(by_reaction, wanted, article, n)
        add(by_day, day, article .. '|' .. wanted, n)
        add(day_totals, day, wanted, n)
      end
      by_article[article] = (by_article[article] or 0) + delta
      total = total + delta
    end
  end
  redis.call('DEL', pending)
  for article, n in pairs(by_article) do redis.call('ZINCRBY', index, n, article) end
  for reaction, articles in pairs(by_reaction) do
    local key = index_prefix .. reaction
    for article, n in pairs(articles) do redis.call('ZINCRBY', key, n, article) end
  end
  for day, fields in pairs(by_day) do
    local key = day_prefix .. day
    for field, n in pairs(fields) do redis.call('HINCRBY', key, field, n) end
    redis.call('EXPIRE', key, retention)
    key = total_prefix .. day
    for field, n in pairs(day_totals[day]) do redis.call('HINCRBY', key, field, n) end
    redis.call('EXPIRE', key, retention)
  end
  redis.call('HINCRBY', stats, 'total', total)
  if last then redis.call('HSET', stats, 'last', last) end
end
