"""Everything that knows Redis key names and scripts.

Every key of a site carries `{site}` as a Redis Cluster hash tag, so the vote script can touch
an article's counters, its readers, the site index and the day bucket atomically on one shard.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import hiredis
import redis
from flask import current_app
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from .reactions import DEFAULT_REACTIONS, Reaction, parse_reaction_set

SITES_KEY = "rx:sites"
SECRET_KEY = "rx:secret"
DAY_RETENTION_SECONDS = 400 * 24 * 3600
SITE_CACHE_SECONDS = 5.0
# Redis connections per process (per node on a cluster).
MAX_CONNECTIONS = 64
# The origin placeholder that means "the reactions server's own origin" (the demo site).
SELF_ORIGIN = "self"


def counts_key(site: str, article: str) -> str:
    return f"rx:{{{site}}}:a:{article}"


def readers_key(site: str, article: str) -> str:
    return f"rx:{{{site}}}:r:{article}"


def index_key(site: str, reaction: str | None = None) -> str:
    """Articles by total; with a reaction, articles by that reaction's count."""
    return f"rx:{{{site}}}:index" + (f":{reaction}" if reaction else "")


def reaction_index_prefix(site: str) -> str:
    """`index_key(site, reaction)` without the reaction, for the scripts."""
    return index_key(site) + ":"


def meta_key(site: str) -> str:
    return f"rx:{{{site}}}:meta"


def stats_key(site: str) -> str:
    return f"rx:{{{site}}}:stats"


def imported_key(site: str) -> str:
    return f"rx:{{{site}}}:imported"


def day_key(site: str, day: str) -> str:
    """Reactions added that day, per `article|reaction`."""
    return f"rx:{{{site}}}:d:{day}"


def day_total_key(site: str, day: str) -> str:
    """Reactions added that day in the whole site, per reaction."""
    return f"rx:{{{site}}}:dt:{day}"


def pending_key(site: str) -> str:
    """Votes not yet applied to the statistics (see FOLD_LUA): a list of
    `time day previous wanted article` lines (the time in 10 digits; ids and days have no
    space)."""
    return f"rx:{{{site}}}:pending"


def channel(site: str, article: str) -> str:
    return f"rx:{{{site}}}:ch:{article}"


def client_rate_key(site: str, client: str, minute: int) -> str:
    return f"rx:{{{site}}}:rl:{client}:{minute}"


def address_rate_key(site: str, address: str, minute: int) -> str:
    """Votes from one address block (see security.address_block) to one site that minute."""
    return f"rx:{{{site}}}:ra:{address}:{minute}"


def site_rate_key(site: str, second: int) -> str:
    return f"rx:{{{site}}}:rs:{second}"


def new_articles_key(site: str, hour: int) -> str:
    return f"rx:{{{site}}}:new:{hour}"


def site_channel(site: str) -> str:
    """Where a change of the site's record is announced: the article channel of the empty
    id, which no article has (`normalize_article` refuses it), so that the one pattern
    subscription of a worker hears it too."""
    return channel(site, "")


def channel_pattern() -> str:
    """Every article channel (and `site_channel`) of every site: one subscription per worker
    process."""
    return "rx:{*}:ch:*"


def parse_channel(name: str) -> tuple[str, str]:
    """(site, article) of a channel name made by `channel`."""
    site, _, article = name[len("rx:{") :].partition("}:ch:")
    return site, article


def salt_key(day: str) -> str:
    return f"rx:salt:{day}"


ADMIN_KEY = "rx:admin"


# HASH login id → the time it expires (unix seconds): the admin's open logins.
ADMIN_LOGINS_KEY = "rx:admin:logins"


def login_failures_key(address: str) -> str:
    """Failed logins from one address block (a hash of it, see security.address_fingerprint)."""
    return f"rx:admin:fail:{address}"


# Failed logins from every address together, in the current window.
ALL_LOGIN_FAILURES_KEY = "rx:admin:failures"


# The admin's statistics (the site's indexes, its total and last vote, the day buckets) take
# votes in batches. A vote appends one line to the site's pending list in the same atomic step
# that changes its counts; the lines are folded into the statistics when FOLD_AT of them wait,
# and before anything reads the statistics (`Store.fold`). At every moment the statistics and
# the pending lines together are exact, and nothing reads one without the other.
#
# Why: written by every vote, the statistics were six of its commands and, with Redis's
# journal of them, about a third of Redis's work for a vote. A fold applies a hundred votes in
# one command per index entry and day field they touched, so a popular article's hundred votes
# cost Redis a few commands instead of six hundred (measured: see docs/benchmarks.md,
# "Statistics folded in batches").
#
# The per-reaction index and day keys are named in Lua from their prefix (ARGV) and the line:
# a fold may meet yesterday's votes, or a reaction the site has since dropped. All carry the
# site's hash tag, so on a cluster they live in the script's slot.
FOLD_AT = 100

FOLD_LUA = """
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
"""

# Folds a site's pending votes into its statistics. KEYS: pending, index, stats; ARGV: the
# prefixes of the per-reaction index, day and day total keys, and the day keys' retention.
FOLD_SCRIPT = (
    FOLD_LUA
    + """
fold(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 0
"""
)

# One vote, atomically: move this reader's reaction from the previous choice to the new one
# (or remove it), note the vote for the statistics (see FOLD_AT), publish and return the
# counts. Setting the choice a reader already has changes nothing, so retries never
# double-count. It first applies the rate limits (KEYS[7..10]), so a vote costs one round trip:
# the client's (address + user agent), then the address's, which no header resets, then the
# site's. A client over its own limit stops before it spends its address's budget, so one
# browser cannot use up the allowance of the readers behind its NAT.
#
# Kept cheap for Redis: increments are passed as strings, because Redis formats a Lua number
# argument with snprintf, and the counts are published and returned as HGETALL's reply joined
# by commas (`happy,3,sad,1`, see decode_counts), which costs Redis less than building a JSON
# object or a nested reply.
VOTE_SCRIPT = (
    FOLD_LUA
    + """
local function limited(key, limit, window)
  local used = redis.call('INCR', key)
  if used == 1 then redis.call('EXPIRE', key, window) end
  if used > limit then
    local ttl = redis.call('TTL', key)
    return ttl > 0 and ttl or window
  end
  return nil
end
local wait = limited(KEYS[7], tonumber(ARGV[9]), 60)
if wait then return {'!', 'client', wait} end
wait = limited(KEYS[10], tonumber(ARGV[18]), 60)
if wait then return {'!', 'address', wait} end
wait = limited(KEYS[8], tonumber(ARGV[10]), 1)
if wait then return {'!', 'site', wait} end
local previous = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local wanted = ARGV[2]
if previous ~= wanted then
  local meta = redis.call('HGET', KEYS[4], ARGV[3])
  if not meta then
    -- A new article: at most ARGV[11] a site per hour, so strangers cannot flood Redis.
    wait = limited(KEYS[9], tonumber(ARGV[11]), 3600)
    if wait then return {'!', 'articles', wait} end
  end
  if previous ~= '' then
    if redis.call('HINCRBY', KEYS[1], previous, '-1') <= 0 then
      redis.call('HDEL', KEYS[1], previous)
    end
  end
  if wanted ~= '' then
    redis.call('HINCRBY', KEYS[1], wanted, '1')
    redis.call('HSET', KEYS[2], ARGV[1], wanted)
  else
    redis.call('HDEL', KEYS[2], ARGV[1])
  end
  if not meta then
    redis.call('HSET', KEYS[4], ARGV[3], cjson.encode(
      {url = ARGV[6], title = ARGV[7], first_seen = tonumber(ARGV[5])}))
  elseif ARGV[6] ~= '' or ARGV[7] ~= '' then
    -- A title or URL the article has is replaced only by a vote from its URL's origin
    -- (ARGV[17], the vote's Origin); one it lacks, any vote from an allowed page fills in.
    local m = cjson.decode(meta)
    local url, title = m.url or '', m.title or ''
    local own = ARGV[17] ~= '' and url ~= ''
      and string.lower(string.match(url, '^%a+://[^/?#]*') or '') == ARGV[17]
    local changed = false
    if ARGV[6] ~= '' and ARGV[6] ~= url and (own or url == '') then
      m.url, changed = ARGV[6], true
    end
    if ARGV[7] ~= '' and ARGV[7] ~= title and (own or title == '') then
      m.title, changed = ARGV[7], true
    end
    if changed then redis.call('HSET', KEYS[4], ARGV[3], cjson.encode(m)) end
  end
  local line = ARGV[5] .. ' ' .. ARGV[12] .. ' ' .. previous .. ' ' .. wanted .. ' ' .. ARGV[3]
  if redis.call('RPUSH', KEYS[5], line) >= tonumber(ARGV[16]) then
    fold(KEYS[5], KEYS[3], KEYS[6], ARGV[13], ARGV[14], ARGV[15], ARGV[8])
  end
end
local counts = table.concat(redis.call('HGETALL', KEYS[1]), ',')
if previous ~= wanted then redis.call('PUBLISH', ARGV[4], counts) end
return {previous, counts}
"""
)

# An admin's reset: the article's counts and readers go, it stays listed with 0. The site's
# pending votes are folded first, or they would count the article's again afterwards.
# KEYS[7..] are the per-reaction indexes. Returns the number of reactions removed.
RESET_SCRIPT = (
    FOLD_LUA
    + """
fold(KEYS[6], KEYS[3], KEYS[5], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 2, #counts, 2 do total = total + tonumber(counts[i]) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('HINCRBY', KEYS[5], 'total', -total)
for i = 7, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
redis.call('PUBLISH', ARGV[2], '')
return total
"""
)

# Starting counts from another system (e.g. a WordPress export), idempotent: the counts
# imported last time are remembered, and only the difference is applied, so importing the
# same file twice changes nothing and live reactions are kept. KEYS[6..] match ARGV[7..].
# Changed counts are published as a vote's are (ARGV[6] is the channel), so every server's
# cached counts and open bars follow at once, whichever process ran the import.
IMPORT_SCRIPT = """
local wanted = cjson.decode(ARGV[5])
local before = cjson.decode(redis.call('HGET', KEYS[4], ARGV[1]) or '{}')
local delta_total, changed = 0, false
for i = 7, #ARGV do
  local reaction = ARGV[i]
  local delta = (tonumber(wanted[reaction]) or 0) - (tonumber(before[reaction]) or 0)
  if delta ~= 0 then
    if redis.call('HINCRBY', KEYS[1], reaction, delta) <= 0 then
      redis.call('HDEL', KEYS[1], reaction)
    end
    redis.call('ZINCRBY', KEYS[i - 1], delta, ARGV[1])
    delta_total = delta_total + delta
    changed = true
  end
end
redis.call('ZINCRBY', KEYS[2], delta_total, ARGV[1])
redis.call('HINCRBY', KEYS[5], 'total', delta_total)
local meta = redis.call('HGET', KEYS[3], ARGV[1])
local m = meta and cjson.decode(meta) or {first_seen = tonumber(ARGV[2])}
if ARGV[3] ~= '' then m.url = ARGV[3] end
if ARGV[4] ~= '' then m.title = ARGV[4] end
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(m))
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
if changed then
  redis.call('PUBLISH', ARGV[6], table.concat(redis.call('HGETALL', KEYS[1]), ','))
end
return delta_total
"""


@dataclass(frozen=True)
class Site:
    name: str
    origins: tuple[str, ...]
    reactions: tuple[Reaction, ...] = DEFAULT_REACTIONS
    created: float = 0.0
    # Reactions no longer offered: their votes are kept, not shown as an option.
    retired: tuple[Reaction, ...] = ()

    def allows(self, origin: str | None, own_origin: str | None) -> bool:
        """`own_origin`: the server's own origin when the caller has checked that it is
        (security.is_own_origin), for a site that allows `self`; None otherwise."""
        if not origin:
            return False
        return origin in self.origins or (SELF_ORIGIN in self.origins and origin == own_origin)

    @property
    def all_reactions(self) -> tuple[Reaction, ...]:
        return self.reactions + self.retired

    @functools.cached_property
    def vote_keys(self) -> tuple[str, ...]:
        """(index, meta, and `fold_arguments`): the vote script's keys and arguments that
        depend on the site only, built once per record."""
        return (index_key(self.name), meta_key(self.name), *fold_arguments(self.name))

    def to_json(self) -> str:
        return json.dumps(
            {
                "origins": list(self.origins),
                "reactions": [r.as_dict() for r in self.reactions],
                "retired": [r.as_dict() for r in self.retired],
                "created": self.created,
            }
        )

    @classmethod
    def from_json(cls, name: str, raw: str) -> Site:
        data = json.loads(raw)
        return cls(
            name=name,
            origins=tuple(data.get("origins", ())),
            reactions=parse_reaction_set(data["reactions"])
            if data.get("reactions")
            else DEFAULT_REACTIONS,
            created=float(data.get("created", 0)),
            retired=parse_reaction_set(data.get("retired", [])),
        )


# Sites that exist without being registered; `reactions sites add demo …` overrides it.
BUILTIN_SITES = {"demo": Site(name="demo", origins=(SELF_ORIGIN,))}


@dataclass(frozen=True)
class Limits:
    """How many votes a client (address + user agent) and an address block may send to a site
    per minute, a site may take per second, and how many new articles a site may gain per
    hour."""

    per_client_minute: int = 1_000_000
    per_site_second: int = 1_000_000
    new_articles_hour: int = 1_000_000
    per_address_minute: int = 1_000_000


class RateLimited(Exception):
    def __init__(self, scope: str, retry_after: int):
        super().__init__(scope)
        self.scope = scope
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True)
class SiteStats:
    site: Site
    total: int
    articles: int
    last: float | None


@dataclass(frozen=True)
class ArticleStats:
    article: str
    counts: dict[str, int]
    title: str = ""
    url: str = ""
    first_seen: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def vote_arguments(
    site: Site,
    article: str,
    reader: str,
    choice: str | None,
    url: str,
    title: str,
    now: float,
    client: str,
    limits: Limits,
    origin: str = "",
    address: str = "",
) -> tuple[list[str], list]:
    """KEYS and ARGV of the vote script, in the order the script reads them. `origin` is
    the page's the vote came from (its Origin header), "" for the server's own calls."""
    day = utc_day(now)
    name = site.name
    index, meta, pending, stats, index_prefix, day_prefix, total_prefix, retention = site.vote_keys
    keys = [
        counts_key(name, article),
        readers_key(name, article),
        index,
        meta,
        pending,
        stats,
        client_rate_key(name, client, int(now // 60)),
        site_rate_key(name, int(now)),
        new_articles_key(name, int(now // 3600)),
        address_rate_key(name, address, int(now // 60)),
    ]
    args = [
        reader,
        choice or "",
        article,
        channel(name, article),
        f"{int(now):010d}",  # fixed width for the pending line (see FOLD_LUA)
        url,
        title,
        retention,
        limits.per_client_minute,
        limits.per_site_second,
        limits.new_articles_hour,
        day,
        index_prefix,
        day_prefix,
        total_prefix,
        FOLD_AT,
        origin,
        limits.per_address_minute,
    ]
    return keys, args


def fold_arguments(site: str) -> tuple[str, str, str, str, str, int]:
    """pending, stats, and the prefixes and retention that `fold` (FOLD_LUA) takes."""
    return (
        pending_key(site),
        stats_key(site),
        reaction_index_prefix(site),
        day_key(site, ""),
        day_total_key(site, ""),
        DAY_RETENTION_SECONDS,
    )


def current_store() -> Store:
    """The store of the running app (created by `create_app`)."""
    return current_app.extensions["reactions"]


@functools.cache
def _kernel_poll() -> Callable[[], object] | None:
    """The operating system's poll(), even in a gevent worker whose `select` is patched."""
    if "gevent" in sys.modules:
        from gevent import monkey

        return monkey.get_original("select", "poll")
    return getattr(select, "poll", None)


class QuickReadinessCheck:
    """redis-py asks a connection whether bytes wait on it before every command (a reply left
    by an interrupted command would answer the next one), and the live listener asks it, with a
    timeout, before every pub/sub message. In a gevent worker redis-py answers through gevent's
    emulated poll, twice for a message, which made a noticeable share of a vote's and of a
    live message's CPU. This asks the kernel's poll, and waits with a peek on the socket
    itself (measured: see docs/benchmarks.md, "Quick readiness check"). Anything readable
    counts, a closed socket too: the pool then reconnects, and a read raises ConnectionError,
    as with redis-py's own check."""

    def can_read(self, timeout: float | None = 0) -> bool:
        sock, poll = self._sock, _kernel_poll()
        # Only hiredis's reader tells cheaply whether it holds bytes of its own.
        reader = getattr(self._parser, "_reader", None)
        if not sock or reader is None or poll is None or timeout is None:
            return super().can_read(timeout)
        if reader.has_data():
            return True
        poller = poll()
        poller.register(sock.fileno(), select.POLLIN)
        if poller.poll(0):
            return True
        return timeout > 0 and self._wait_readable(sock, timeout)

    def _wait_readable(self, sock: socket.socket, timeout: float) -> bool:
        previous = sock.gettimeout()
        sock.settimeout(timeout)
        try:
            sock.recv(1, socket.MSG_PEEK)  # b"" once closed: readable too
            return True
        except (TimeoutError, BlockingIOError):
            return False
        except OSError as error:
            self.disconnect()
            raise redis.ConnectionError(f"lost the Redis connection: {error}") from error
        finally:
            if self._sock is sock:
                sock.settimeout(previous)


class HiredisPacker:
    """Packs a command with hiredis, as redis-py's HiredisRespSerializer does, without its
    Python pass over every argument that turns a bytearray or memoryview into bytes: this app
    sends neither, and for the vote script's many arguments that pass cost about as much as
    hiredis's packing itself. A command name with a space in it ("SCRIPT LOAD") or an
    argument hiredis refuses goes to redis-py's serializer, which splits, converts or reports
    it."""

    def __init__(self) -> None:
        self._redis_py = HiredisRespSerializer()

    def pack(self, *args) -> list[bytes]:
        if type(args[0]) is str and " " not in args[0]:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        return self._redis_py.pack(*args)


# The monotonic time by which the Redis call under way in this thread or greenlet gives up,
# or None: outside a call, and for a pub/sub reader, which says how long it waits each time.
_call_deadline: ContextVar[float | None] = ContextVar("reactions_redis_deadline", default=None)
# A read this much shorter than the socket timeout is worth a shorter socket timeout; a call
# whose reply comes at once never pays for setting one.
DEADLINE_SLACK = 0.01


def _time_left() -> float | None:
    """Seconds left to the current call's deadline (None: no deadline); TimeoutError once
    it has passed."""
    deadline = _call_deadline.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise redis.TimeoutError("the Redis call ran out of time")
    return left


class BoundedConnection:
    """A connection that keeps two promises to the app, whatever redis-py does inside.

    Every wait (connect, handshake, health check, reply) ends by the deadline of the call
    it serves (see `DeadlinePool`), so a stalled Redis costs a call its timeout once, not a
    timeout per step and retry. And every failure is a `redis.RedisError`, which the app
    answers with a 503: redis-py 8 itself can raise AttributeError when a unix-socket
    connection times out (its error metrics read a TCP-only `host`)."""

    def connect(self):
        try:
            return super().connect()
        except redis.RedisError:
            raise
        except Exception as error:
            raise self._client_failure(error) from error

    def _connect(self):
        left = _time_left()
        if left is None or (self.socket_connect_timeout or float("inf")) <= left:
            return super()._connect()
        configured = self.socket_connect_timeout
        self.socket_connect_timeout = left
        try:
            return super()._connect()
        finally:
            self.socket_connect_timeout = configured

    def send_packed_command(self, command, check_health=True):
        try:
            return super().send_packed_command(command, check_health)
        except redis.RedisError:
            raise
        except Exception as error:
            raise self._client_failure(error) from error

    def read_response(self, *args, **kwargs):
        sock, deadline = self._sock, _call_deadline.get()
        try:
            if sock is None or deadline is None or "timeout" in kwargs:
                return super().read_response(*args, **kwargs)
            left = deadline - time.monotonic()
            if self.socket_timeout is not None and left > self.socket_timeout - DEADLINE_SLACK:
                return super().read_response(*args, **kwargs)
            if left <= 0:
                self.disconnect()  # the command's reply would answer the next one
                raise redis.TimeoutError("the Redis call ran out of time")
            sock.settimeout(left)
            try:
                return super().read_response(*args, **kwargs)
            finally:
                if self._sock is sock:
                    sock.settimeout(self.socket_timeout)
        except redis.RedisError:
            raise
        except Exception as error:
            raise self._client_failure(error) from error

    def register_connect_callback(self, callback):
        # Only a pub/sub client registers one: it holds this connection for as long as it
        # listens and gives each read its own timeout, so the call that lent it ends here.
        _call_deadline.set(None)
        super().register_connect_callback(callback)

    def _client_failure(self, error: Exception) -> redis.ConnectionError:
        self.disconnect()
        return redis.ConnectionError(f"the Redis client failed: {type(error).__name__}: {error}")


class DeadlinePool(redis.BlockingConnectionPool):
    """A bounded pool whose `timeout` is the whole time of one call (a command, a script, a
    pipeline): the wait for a free connection, a reconnect, a health check, the reply and a
    retry all share it. Otherwise, under a stall with every connection busy, a request would
    wait the timeout for a connection, then again for its reply, and again for the retry."""

    def get_connection(self, *args, **kwargs):
        _call_deadline.set(time.monotonic() + self.timeout)
        try:
            return super().get_connection(*args, **kwargs)
        except BaseException:
            _call_deadline.set(None)
            raise

    def release(self, connection):
        _call_deadline.set(None)
        super().release(connection)


class QuickConnection(BoundedConnection, QuickReadinessCheck):
    """The quick readiness check and the hiredis packer (hiredis is a dependency)."""

    def _construct_command_packer(self, packer):
        return packer or HiredisPacker()


class QuickCheckConnection(QuickConnection, redis.Connection):
    """A TCP connection (`redis://`) with the quick readiness check and packer."""


class QuickCheckUnixConnection(QuickConnection, redis.UnixDomainSocketConnection):
    """A unix-socket connection (`unix://`) with the quick readiness check and packer."""

    # redis-py's error metrics read these, which only its TCP connection sets.
    @property
    def host(self) -> str:
        return self.path

    port = None


class BoundedSSLConnection(BoundedConnection, redis.SSLConnection):
    """TLS (`rediss://`) keeps redis-py's own readiness check: decrypted bytes may wait above
    the socket."""


class BoundedSentinelConnection(BoundedConnection, SentinelManagedConnection):
    """The connection to the master a Sentinel group names."""


CONNECTIONS = {
    "redis": QuickCheckConnection,
    "unix": QuickCheckUnixConnection,
    "rediss": BoundedSSLConnection,
    "redis+cluster": QuickCheckConnection,
    "redis+sentinel": BoundedSentinelConnection,
}


def retry_once() -> Retry:
    """One retry, after a dropped connection only (the vote script is idempotent, so a retry
    never double-counts): after a timeout Redis is stalled, and a retry would only wait the
    timeout again."""
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def connect(url: str, timeout: float) -> redis.Redis:
    """A client whose calls fail fast when Redis is down, so a request gets a quick 503.

    `redis://`, `rediss://` and `unix://` reach one Redis; `redis+cluster://host:port` a
    Redis Cluster (redis-py's cluster client, seeded from that node);
    `redis+sentinel://host:port[,host:port…]/service` the master a Sentinel group names.
    """
    options = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # RESP2, not redis-py 8's default RESP3: under RESP3 every pub/sub message goes
        # through redis-py's push-message handler, which formats the message into a debug log
        # line whether or not it is logged, which made each listener's work per message
        # about half as much again. No command we use answers differently, and a new
        # connection needs no HELLO round trip.
        "protocol": 2,
        # With RESP3, redis-py by default expects maintenance notifications on TCP; while it
        # does, its pool no longer checks a connection for a reply left by an interrupted
        # command, which the next command would read as its own. Off, whatever the protocol.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    scheme = urlsplit(url).scheme
    if scheme in CONNECTIONS:
        options["connection_class"] = CONNECTIONS[scheme]
    if scheme in ("redis+cluster", "rediss+cluster"):
        return redis.RedisCluster.from_url(
            url.replace("+cluster", "", 1),
            retry=retry_once(),
            max_connections=MAX_CONNECTIONS,
            **options,
        )
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        parts = urlsplit(url)
        hosts = []
        for host in parts.netloc.rsplit("@", 1)[-1].split(","):
            name, _, port = host.rpartition(":")
            hosts.append((name.strip("[]"), int(port or 26379)))
        service = parts.path.strip("/") or "mymaster"
        sentinel = Sentinel(
            hosts,
            socket_timeout=timeout,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
            password=parts.password,
            ssl=scheme.startswith("rediss"),
        )
        return sentinel.master_for(service, retry=retry_once(), **options)
    # A bounded pool: a burst of a thousand requests (or live streams opening) waits for one
    # of these connections, instead of opening a thousand at once and overflowing Redis's
    # accept backlog.
    pool = DeadlinePool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        retry=retry_once(),
        health_check_interval=30,
        **options,
    )
    return redis.Redis(connection_pool=pool)


def utc_day(timestamp: float) -> str:
    return _utc_day(int(timestamp // 86400))


@functools.lru_cache(maxsize=8)
def _utc_day(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86400))


def last_days(days: int, now: float | None = None) -> list[str]:
    """The `days` UTC dates up to today, oldest first."""
    today = datetime.fromtimestamp(time.time() if now is None else now, UTC).date()
    return [(today - timedelta(days=offset)).isoformat() for offset in range(days - 1, -1, -1)]


@dataclass
class Store:
    """Counters, readers and sites in one Redis; shared by all requests of a process."""

    client: redis.Redis
    secret: str = ""
    limits: Limits = field(default_factory=lambda: Limits())
    # Called with (site, article, counts or None) after this process changed an article, so
    # in-process caches are current at once (other processes learn it through pub/sub).
    on_change: list[Callable[[str, str, dict[str, int] | None], None]] = field(default_factory=list)
    _salts: dict[str, str] = field(default_factory=dict)
    _sites: dict[str, tuple[float, Site | None]] = field(default_factory=dict)
    _site_generation: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _keyed: tuple[str, hmac.HMAC | None] = ("", None)

    def __post_init__(self) -> None:
        self._vote = self.client.register_script(VOTE_SCRIPT)
        self._reset = self.client.register_script(RESET_SCRIPT)
        self._import = self.client.register_script(IMPORT_SCRIPT)
        self._fold = self.client.register_script(FOLD_SCRIPT)

    def _run(self, script, keys: list[str], args: list) -> object:
        """EVALSHA straight away, without redis-py's Script wrapper and its extra work per call
        (measured: see docs/benchmarks.md, "EVALSHA straight away"). After a Redis restart the
        script is gone (NOSCRIPT, nothing ran), and the wrapper loads it and runs it."""
        try:
            return self.client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return script(keys=keys, args=args)

    def ping(self) -> bool:
        return bool(self.client.ping())

    # Sites -------------------------------------------------------------------------------

    def get_site(self, name: str) -> Site | None:
        """The site's record, cached for a few seconds: every vote and read needs it.

        A saved record is announced on `site_channel`, and each server process's live
        listener drops its cached copy then (`forget_sites`): the few seconds only bound how
        long a process without a working subscription keeps an older record."""
        now = time.monotonic()
        cached = self._sites.get(name)
        if cached and now - cached[0] < SITE_CACHE_SECONDS:
            return cached[1]
        generation = self._site_generation
        raw = self.client.hget(SITES_KEY, name)
        site = Site.from_json(name, raw) if raw else BUILTIN_SITES.get(name)
        # Not kept if the record was announced changed while this read was on its way.
        if generation == self._site_generation:
            self._sites[name] = (now, site)
        return site

    def forget_sites(self, *names: str) -> None:
        """Drop the cached records of these sites (of every site without names): the next
        read asks Redis."""
        with self._lock:
            self._site_generation += 1
            if names:
                for name in names:
                    self._sites.pop(name, None)
            else:
                self._sites.clear()

    def save_site(self, site: Site) -> Site:
        """Store the record and announce it, so every server process reads it afresh."""
        if not site.created:
            existing = self.client.hget(SITES_KEY, site.name)
            created = Site.from_json(site.name, existing).created if existing else time.time()
            site = replace(site, created=created)
        self.client.hset(SITES_KEY, site.name, site.to_json())
        self.forget_sites(site.name)
        self.client.publish(site_channel(site.name), "")
        return site

    def list_sites(self) -> list[Site]:
        raw_sites = self.client.hgetall(SITES_KEY)
        stored = {name: Site.from_json(name, raw) for name, raw in raw_sites.items()}
        for name, site in BUILTIN_SITES.items():
            stored.setdefault(name, site)
        return [stored[name] for name in sorted(stored)]

    def is_registered(self, name: str) -> bool:
        return bool(self.client.hexists(SITES_KEY, name))

    def remove_site(self, name: str) -> bool:
        removed = bool(self.client.hdel(SITES_KEY, name))
        self.forget_sites(name)
        self.client.publish(site_channel(name), "")
        return removed

    # Readers -----------------------------------------------------------------------------

    def reader_hash(self, site: str, token: str) -> str:
        """An HMAC of the reader's token: the raw token is never stored.

        The site is part of the message, so one reader cannot be linked across sites.
        """
        return self.keyed_hash(f"reader\0{site}\0{token}")[:32]

    def keyed_hash(self, message: str) -> str:
        """HMAC-SHA256 under the server secret, from an HMAC keyed once and copied for each
        message: keying it anew was a quarter of each vote's reader hash."""
        secret = self.server_secret()
        key, keyed = self._keyed
        if key != secret:
            keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)
            self._keyed = (secret, keyed)
        digest = keyed.copy()
        digest.update(message.encode())
        return digest.hexdigest()

    def server_secret(self) -> str:
        if not self.secret:
            with self._lock:
                if not self.secret:
                    # One secret for every worker and app server sharing this Redis.
                    self.client.set(SECRET_KEY, secrets.token_urlsafe(32), nx=True)
                    self.secret = self.client.get(SECRET_KEY)
        return self.secret

    # Counters ----------------------------------------------------------------------------

    def counts(self, site: str, article: str) -> dict[str, int]:
        return _as_counts(self.client.hgetall(counts_key(site, article)))

    def counts_many(self, site: str, articles: list[str]) -> list[dict[str, int]]:
        return self._counts_of([counts_key(site, article) for article in articles])

    def _counts_of(self, keys: list[str]) -> list[dict[str, int]]:
        """Counter hashes (reaction -> count) of many keys, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return [_as_counts(raw) for raw in pipe.execute()]

    def set_reaction(
        self,
        site: Site,
        article: str,
        reader: str,
        choice: str | None,
        url: str = "",
        title: str = "",
        now: float | None = None,
        client: str = "",
        limits: Limits | None = None,
        origin: str = "",
        address: str = "",
    ) -> tuple[str | None, dict[str, int]]:
        """Set (or with None, take back) a reader's reaction; returns (previous, counts).

        `url` and `title` describe the article: they are kept when it has none yet, and
        replace its own only when `origin` (the page the vote came from) is its URL's.

        Raises RateLimited when the client, its address, the site or the site's new articles
        are over their limits; nothing is changed then.
        """
        now = time.time() if now is None else now
        # Limits are for requests from clients; the server's own calls (import, tools) have none.
        limits = limits or (self.limits if client else Limits())
        keys, args = vote_arguments(
            site, article, reader, choice, url, title, now, client, limits, origin, address
        )
        result = self._run(self._vote, keys, args)
        if result[0] == "!":
            raise RateLimited(result[1], int(result[2]))
        previous, flat = result
        counts = decode_counts(flat)
        self._changed(site.name, article, counts)
        return (previous or None), counts

    def _changed(self, site: str, article: str, counts: dict[str, int] | None) -> None:
        for callback in self.on_change:
            callback(site, article, counts)

    def reader_choice(self, site: str, article: str, reader: str) -> str | None:
        return self.client.hget(readers_key(site, article), reader)

    def reset_article(self, site: Site, article: str) -> int:
        ids = [r.id for r in site.all_reactions]
        name = site.name
        pending, stats, *prefixes_and_retention = fold_arguments(name)
        removed = int(
            self._reset(
                keys=[
                    counts_key(name, article),
                    readers_key(name, article),
                    index_key(name),
                    imported_key(name),
                    stats,
                    pending,
                    *(index_key(name, r) for r in ids),
                ],
                args=[article, channel(name, article), *prefixes_and_retention],
            )
        )
        self._changed(name, article, None)
        return removed

    def import_counts(
        self, site: Site, article: str, counts: dict[str, int], url: str, title: str
    ) -> int:
        """Make `counts` the article's imported starting counts; returns the change in total."""
        ids = [r.id for r in site.all_reactions]
        name = site.name
        wanted = {r: int(counts.get(r, 0)) for r in ids}
        change = int(
            self._import(
                keys=[
                    counts_key(name, article),
                    index_key(name),
                    meta_key(name),
                    imported_key(name),
                    stats_key(name),
                    *(index_key(name, r) for r in ids),
                ],
                args=[
                    article,
                    int(time.time()),
                    url,
                    title,
                    json.dumps(wanted),
                    channel(name, article),
                    *ids,
                ],
            )
        )
        self._changed(name, article, None)
        return change

    # Statistics for the admin pages: folds, pipelines and indexes, never a round trip per
    # article ------------------------------------------------------------------------------

    def fold(self, site: str) -> None:
        """Apply the site's pending votes to its statistics (see FOLD_LUA), before reading
        them. Its own round trip: redis-py's cluster pipelines refuse scripts."""
        pending, stats, *args = fold_arguments(site)
        self._run(self._fold, [pending, index_key(site), stats], args)

    def site_stats(self, sites: list[Site]) -> list[SiteStats]:
        for site in sites:
            self.fold(site.name)
        pipe = self.client.pipeline(transaction=False)
        for site in sites:
            pipe.hmget(stats_key(site.name), "total", "last")
            pipe.zcard(index_key(site.name))
        replies = pipe.execute()
        result = []
        for number, site in enumerate(sites):
            (total, last), articles = replies[2 * number], replies[2 * number + 1]
            result.append(
                SiteStats(site, int(total or 0), int(articles), float(last) if last else None)
            )
        return result

    def top_articles(
        self, site: str, reaction: str | None, offset: int, limit: int
    ) -> list[ArticleStats]:
        """Articles by total (or by one reaction's count), highest first."""
        self.fold(site)
        ranked = self.client.zrevrange(index_key(site, reaction), offset, offset + limit - 1)
        return self.article_stats(site, ranked)

    def article_stats(self, site: str, articles: list[str]) -> list[ArticleStats]:
        if not articles:
            return []
        pipe = self.client.pipeline(transaction=False)
        for article in articles:
            pipe.hgetall(counts_key(site, article))
        pipe.hmget(meta_key(site), articles)
        *all_counts, metas = pipe.execute()
        result = []
        for article, counts, meta in zip(articles, all_counts, metas, strict=True):
            info = json.loads(meta) if meta else {}
            result.append(
                ArticleStats(
                    article,
                    _as_counts(counts),
                    title=str(info.get("title") or ""),
                    url=str(info.get("url") or ""),
                    first_seen=info.get("first_seen"),
                )
            )
        return result

    def search_articles(self, site: str, term: str, limit: int) -> list[ArticleStats]:
        """Articles whose id or title contains `term` (any case), highest total first."""
        needle = term.casefold()
        # The title as it appears inside the stored JSON (Lua's cjson escapes / and quotes):
        # a cheap substring test skips decoding the metadata of articles that cannot match.
        encoded = json.dumps(needle, ensure_ascii=False)[1:-1].replace("/", "\\/")
        found = []
        for article, meta in self.client.hscan_iter(meta_key(site), count=5000):
            if needle in article.casefold():
                found.append(article)
            elif encoded in meta.casefold():
                title = str(json.loads(meta).get("title") or "")
                if needle in title.casefold():
                    found.append(article)
        if not found:
            return []
        self.fold(site)
        scores = self.client.zmscore(index_key(site), found)
        ranked = sorted(zip(found, scores, strict=True), key=lambda item: -(item[1] or 0))
        return self.article_stats(site, [article for article, _ in ranked[:limit]])

    def site_timeline(self, site: str, days: list[str]) -> list[dict[str, int]]:
        """Reactions added on each day, per reaction."""
        self.fold(site)
        return self._counts_of([day_total_key(site, day) for day in days])

    def article_timeline(
        self, site: str, article: str, reactions: list[str], days: list[str]
    ) -> list[dict[str, int]]:
        fields = [f"{article}|{r}" for r in reactions]
        self.fold(site)
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hmget(day_key(site, day), fields)
        return [
            {r: int(v) for r, v in zip(reactions, values, strict=True) if v}
            for values in pipe.execute()
        ]

    def iter_articles(self, site: str, batch: int = 500) -> Iterator[ArticleStats]:
        """Every article of a site by total, highest first, a batch per round trip."""
        self.fold(site)
        offset = 0
        while True:
            ranked = self.client.zrevrange(index_key(site), offset, offset + batch - 1)
            yield from self.article_stats(site, ranked)
            if len(ranked) < batch:
                return
            offset += batch

    # Admin login ---------------------------------------------------------------------------

    def admin_password_hash(self) -> str | None:
        return self.client.hget(ADMIN_KEY, "password")

    def set_admin_password_hash(self, password_hash: str) -> None:
        """A new password ends every open login."""
        pipe = self.client.pipeline(transaction=False)  # two keys: two cluster slots
        pipe.hset(ADMIN_KEY, "password", password_hash)
        pipe.delete(ADMIN_LOGINS_KEY)
        pipe.execute()

    def open_admin_login(self, lifetime: int) -> str:
        """A new login's random id, valid for `lifetime` seconds unless it is ended first.
        Logins that expired are forgotten here, so the record stays small."""
        now = time.time()
        expired = [
            login
            for login, until in self.client.hgetall(ADMIN_LOGINS_KEY).items()
            if float(until) <= now
        ]
        login = secrets.token_urlsafe(24)
        pipe = self.client.pipeline(transaction=False)
        if expired:
            pipe.hdel(ADMIN_LOGINS_KEY, *expired)
        pipe.hset(ADMIN_LOGINS_KEY, login, int(now + lifetime))
        pipe.expire(ADMIN_LOGINS_KEY, lifetime)  # no login outlives the newest one
        pipe.execute()
        return login

    def admin_login_open(self, login: str) -> bool:
        until = self.client.hget(ADMIN_LOGINS_KEY, login) if login else None
        return until is not None and float(until) > time.time()

    def end_admin_login(self, login: str) -> None:
        if login:
            self.client.hdel(ADMIN_LOGINS_KEY, login)

    def login_lockout(self, address: str, per_address: int, everyone: int | None) -> int:
        """Seconds before a login may be tried from this address: 0 unless its failures
        reached `per_address`, or everyone's together reached `everyone` (None: this address
        is not held by the global budget)."""
        # Not a transaction: the keys live on different cluster slots.
        pipe = self.client.pipeline(transaction=False)
        for key in (login_failures_key(address), ALL_LOGIN_FAILURES_KEY):
            pipe.get(key)
            pipe.ttl(key)
        mine, mine_ttl, all_, all_ttl = pipe.execute()
        wait = 0
        if int(mine or 0) >= per_address:
            wait = max(wait, mine_ttl, 1)
        if everyone is not None and int(all_ or 0) >= everyone:
            wait = max(wait, all_ttl, 1)
        return wait

    def count_login_failure(self, address: str, window: int) -> int:
        """Count a failed login from this address and in everyone's window; returns the
        address's failures. The address's window starts again with each failure; everyone's
        is fixed from its first failure, so a lock-out by many addresses ends with it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(login_failures_key(address))
        pipe.expire(login_failures_key(address), window)
        pipe.set(ALL_LOGIN_FAILURES_KEY, 0, nx=True, ex=window)
        pipe.incr(ALL_LOGIN_FAILURES_KEY)
        pipe.hincrby(ADMIN_KEY, "failed_logins", 1)
        failures, *_ = pipe.execute()
        return int(failures)

    def clear_login_failures(self, address: str) -> None:
        self.client.delete(login_failures_key(address))

    def unlock_admin_login(self) -> int:
        """Forget every counted login failure, of every address and of everyone together:
        the admin's way in during an attack (`reactions admin unlock`). Returns how many
        counters were removed."""
        keys = [ALL_LOGIN_FAILURES_KEY, *self.client.scan_iter(match=login_failures_key("*"))]
        return sum(int(self.client.delete(key)) for key in keys)

    def daily_salt(self, day: str) -> str:
        """A random salt per UTC day, gone after 48 h: yesterday's hashes cannot be linked.

        Cached per process; every worker and app server reads the same salt from Redis.
        """
        salt = self._salts.get(day)
        if salt is None:
            key = salt_key(day)
            pipe = self.client.pipeline(transaction=False)
            pipe.set(key, secrets.token_hex(16), nx=True, ex=48 * 3600)
            pipe.get(key)
            salt = pipe.execute()[1]
            self._salts = {day: salt}
        return salt


def decode_counts(flat: str) -> dict[str, int]:
    """An article's counts as the vote script publishes and returns them: `reaction,count,…`
    in HGETALL's order (reaction ids have no comma), empty when no reaction is left.
    ValueError if it is not that."""
    if not flat:
        return {}
    parts = flat.split(",")
    return dict(zip(parts[::2], map(int, parts[1::2]), strict=True))


def _as_counts(raw: dict[str, str]) -> dict[str, int]:
    return {reaction: int(count) for reaction, count in raw.items()}
