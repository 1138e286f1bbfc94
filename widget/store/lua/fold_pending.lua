-- Folds a site's pending votes into its statistics (see fold.lua), before they are read.
--
-- KEYS[1]  pending_key   the site's votes not yet folded (LIST)
-- KEYS[2]  index_key     the site's articles by total (ZSET)
-- KEYS[3]  stats_key     the site's total and last vote (HASH)
-- ARGV[1]  index_prefix  the per-reaction index keys, without the reaction
-- ARGV[2]  day_prefix    the day bucket keys, without the day
-- ARGV[3]  total_prefix  the day total keys, without the day
-- ARGV[4]  retention     seconds a day bucket is kept
--
-- Returns 0.
local pending_key = KEYS[1]
local index_key = KEYS[2]
local stats_key = KEYS[3]
local index_prefix = ARGV[1]
local day_prefix = ARGV[2]
local total_prefix = ARGV[3]
local retention = ARGV[4]

fold(pending_key, index_key, stats_key, index_prefix, day_prefix, total_prefix, retention)
return 0
