"""Everything that knows Redis key names and scripts.

Every key of a site carries `{site}` as a Redis Cluster hash tag, so the vote script can touch
an article's counters, its readers, the site index and the day bucket atomically on one shard.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from flask import current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from .reactions import DEFAULT_REACTIONS, Reaction, parse_reaction_set

SITES_KEY = "rx:sites"
SECRET_KEY = "rx:secret"
DAY_RETENTION_SECONDS = 400 * 24 * 3600
SITE_CACHE_SECONDS = 5.0
# The origin placeholder that means "the reactions server's own origin" (the demo site).
SELF_ORIGIN = "self"


def counts_key(site: str, article: str) -> str:
    return f"rx:{{{site}}}:a:{article}"


def readers_key(site: str, article: str) -> str:
    return f"rx:{{{site}}}:r:{article}"


def index_key(site: str) -> str:
    return f"rx:{{{site}}}:index"


def meta_key(site: str) -> str:
    return f"rx:{{{site}}}:meta"


def day_key(site: str, day: str) -> str:
    return f"rx:{{{site}}}:d:{day}"


def channel(site: str, article: str) -> str:
    return f"rx:{{{site}}}:ch:{article}"


# One vote, atomically: move this reader's reaction from the previous choice to the new one
# (or remove it), keep the index and the day bucket in step, publish and return the counts.
# Setting the choice a reader already has changes nothing, so retries never double-count.
VOTE_SCRIPT = """
local previous = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local wanted = ARGV[2]
if previous ~= wanted then
  if previous ~= '' then
    if redis.call('HINCRBY', KEYS[1], previous, -1) <= 0 then
      redis.call('HDEL', KEYS[1], previous)
    end
  end
  if wanted ~= '' then
    redis.call('HINCRBY', KEYS[1], wanted, 1)
    redis.call('HSET', KEYS[2], ARGV[1], wanted)
    redis.call('HINCRBY', KEYS[5], ARGV[3] .. '|' .. wanted, 1)
    redis.call('EXPIRE', KEYS[5], ARGV[8])
  else
    redis.call('HDEL', KEYS[2], ARGV[1])
  end
  local delta = (wanted ~= '' and 1 or 0) - (previous ~= '' and 1 or 0)
  if delta ~= 0 then
    redis.call('ZINCRBY', KEYS[3], delta, ARGV[3])
  end
  local meta = redis.call('HGET', KEYS[4], ARGV[3])
  if not meta then
    redis.call('HSET', KEYS[4], ARGV[3], cjson.encode(
      {url = ARGV[6], title = ARGV[7], first_seen = tonumber(ARGV[5])}))
  elseif ARGV[6] ~= '' or ARGV[7] ~= '' then
    local m = cjson.decode(meta)
    if (ARGV[6] ~= '' and m.url ~= ARGV[6]) or (ARGV[7] ~= '' and m.title ~= ARGV[7]) then
      if ARGV[6] ~= '' then m.url = ARGV[6] end
      if ARGV[7] ~= '' then m.title = ARGV[7] end
      redis.call('HSET', KEYS[4], ARGV[3], cjson.encode(m))
    end
  end
end
local counts = redis.call('HGETALL', KEYS[1])
if previous ~= wanted then
  local message = {}
  for i = 1, #counts, 2 do message[counts[i]] = tonumber(counts[i + 1]) end
  redis.call('PUBLISH', ARGV[4], cjson.encode(message))
end
return {previous, counts}
"""


@dataclass(frozen=True)
class Site:
    name: str
    origins: tuple[str, ...]
    reactions: tuple[Reaction, ...] = DEFAULT_REACTIONS
    created: float = 0.0

    def allows(self, origin: str | None, own_origin: str) -> bool:
        if not origin:
            return False
        return origin in self.origins or (SELF_ORIGIN in self.origins and origin == own_origin)

    def to_json(self) -> str:
        return json.dumps(
            {
                "origins": list(self.origins),
                "reactions": [r.as_dict() for r in self.reactions],
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
        )


# Sites that exist without being registered; `reactions sites add demo …` overrides it.
BUILTIN_SITES = {"demo": Site(name="demo", origins=(SELF_ORIGIN,))}


def current_store() -> Store:
    """The store of the running app (created by `create_app`)."""
    return current_app.extensions["reactions"]


def connect(url: str, timeout: float) -> redis.Redis:
    """A client whose calls fail fast when Redis is down, so a request gets a quick 503."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


@dataclass
class Store:
    """Counters, readers and sites in one Redis; shared by all requests of a process."""

    client: redis.Redis
    secret: str = ""
    _sites: dict[str, tuple[float, Site | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._vote = self.client.register_script(VOTE_SCRIPT)

    def ping(self) -> bool:
        return bool(self.client.ping())

    # Sites -------------------------------------------------------------------------------

    def get_site(self, name: str) -> Site | None:
        """The site's record, cached for a few seconds: every vote and read needs it."""
        now = time.monotonic()
        cached = self._sites.get(name)
        if cached and now - cached[0] < SITE_CACHE_SECONDS:
            return cached[1]
        raw = self.client.hget(SITES_KEY, name)
        site = Site.from_json(name, raw) if raw else BUILTIN_SITES.get(name)
        self._sites[name] = (now, site)
        return site

    def save_site(self, site: Site) -> Site:
        if not site.created:
            existing = self.client.hget(SITES_KEY, site.name)
            created = Site.from_json(site.name, existing).created if existing else time.time()
            site = Site(site.name, site.origins, site.reactions, created)
        self.client.hset(SITES_KEY, site.name, site.to_json())
        self._sites.pop(site.name, None)
        return site

    def list_sites(self) -> list[Site]:
        raw_sites = self.client.hgetall(SITES_KEY)
        stored = {name: Site.from_json(name, raw) for name, raw in raw_sites.items()}
        for name, site in BUILTIN_SITES.items():
            stored.setdefault(name, site)
        return [stored[name] for name in sorted(stored)]

    def remove_site(self, name: str) -> bool:
        self._sites.pop(name, None)
        return bool(self.client.hdel(SITES_KEY, name))

    # Readers -----------------------------------------------------------------------------

    def reader_hash(self, site: str, token: str) -> str:
        """An HMAC of the reader's token: the raw token is never stored.

        The site is part of the message, so one reader cannot be linked across sites.
        """
        key = self._secret().encode()
        digest = hmac.new(key, f"{site}\0{token}".encode(), hashlib.sha256).hexdigest()
        return digest[:32]

    def _secret(self) -> str:
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
        pipe = self.client.pipeline(transaction=False)
        for article in articles:
            pipe.hgetall(counts_key(site, article))
        return [_as_counts(raw) for raw in pipe.execute()]

    def set_reaction(
        self,
        site: str,
        article: str,
        reader: str,
        choice: str | None,
        url: str = "",
        title: str = "",
        now: float | None = None,
    ) -> tuple[str | None, dict[str, int]]:
        """Set (or with None, take back) a reader's reaction; returns (previous, counts)."""
        now = time.time() if now is None else now
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        previous, flat = self._vote(
            keys=[
                counts_key(site, article),
                readers_key(site, article),
                index_key(site),
                meta_key(site),
                day_key(site, day),
            ],
            args=[
                reader,
                choice or "",
                article,
                channel(site, article),
                int(now),
                url,
                title,
                DAY_RETENTION_SECONDS,
            ],
        )
        counts = {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return (previous or None), counts

    def reader_choice(self, site: str, article: str, reader: str) -> str | None:
        return self.client.hget(readers_key(site, article), reader)


def _as_counts(raw: dict[str, str]) -> dict[str, int]:
    return {reaction: int(count) for reaction, count in raw.items()}
