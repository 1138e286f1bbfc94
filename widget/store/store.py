"""The Store API the blueprints call: sites, reader hashes, votes and statistics.

Each is one call; the keys and scripts it uses live in `keys` and `scripts`, what every request
needs is held by `held`, and the admin's login calls come from `admin_login`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import redis
from flask import current_app

from .admin_login import AdminLogin
from .held import DailySalts, SiteRecords
from .keys import (
    SECRET_KEY,
    SITES_KEY,
    counts_key,
    day_key,
    day_total_key,
    index_key,
    meta_key,
    readers_key,
    site_channel,
    stats_key,
)
from .records import (
    BUILTIN_SITES,
    ArticleStats,
    Limits,
    OwnReaction,
    RateLimited,
    Site,
    SiteStats,
)
from .scripts import (
    FOLD_SCRIPT,
    IMPORT_SCRIPT,
    INDEX_READERS_SCRIPT,
    MINE_SCRIPT,
    RESET_SCRIPT,
    VOTE_SCRIPT,
    fold_script_arguments,
    import_arguments,
    index_readers_arguments,
    mine_arguments,
    reset_arguments,
    vote_arguments,
)


def current_store() -> Store:
    """The store of the running app (created by `create_app`)."""
    return current_app.extensions["reactions"]


@dataclass
class Store(AdminLogin):
    """Counters, readers and sites in one Redis; shared by all requests of a process."""

    client: redis.Redis
    secret: str = ""
    limits: Limits = field(default_factory=lambda: Limits())
    # Replicas that must have a vote before it is answered (Redis's WAIT), within this many
    # milliseconds; 0: none (replication, if any, stays asynchronous).
    replica_acks: int = 0
    replica_wait_ms: int = 500
    # Called with (site, article, counts or None) after this process changed an article, so
    # in-process caches are current at once (other processes learn it through pub/sub).
    on_change: list[Callable[[str, str, dict[str, int] | None], None]] = field(default_factory=list)
    # What every request needs from a single key, held for the process's life (`held`).
    _sites: SiteRecords = field(init=False, repr=False)
    _salts: DailySalts = field(init=False, repr=False)
    _secret_lock: threading.Lock = field(default_factory=threading.Lock)
    _keyed: tuple[str, hmac.HMAC | None] = ("", None)

    def __post_init__(self) -> None:
        self._sites = SiteRecords(self.client)
        self._salts = DailySalts(self.client)
        self._vote = self.client.register_script(VOTE_SCRIPT)
        self._reset = self.client.register_script(RESET_SCRIPT)
        self._import = self.client.register_script(IMPORT_SCRIPT)
        self._fold = self.client.register_script(FOLD_SCRIPT)
        self._mine = self.client.register_script(MINE_SCRIPT)
        self._index_readers = self.client.register_script(INDEX_READERS_SCRIPT)

    def _run(self, script, keys: list[str], args: list) -> object:
        """EVALSHA straight away, without redis-py's Script wrapper and its extra work per call
        (measured: see docs/benchmarks.md, "EVALSHA straight away"). After a Redis restart the
        script is gone (NOSCRIPT, nothing ran): EVAL runs it and leaves it cached on the node
        that holds the keys. Not the wrapper's SCRIPT LOAD: on a cluster that goes to every
        master, so one master down would stop the sites of a restarted one."""
        try:
            return self.client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return self.client.execute_command("EVAL", script.script, len(keys), *keys, *args)

    def _run_acknowledged(self, script, keys: list[str], args: list) -> object:
        """`_run`, and with `replica_acks` the vote is answered only once that many replicas
        have it (WAIT on the same connection, in the same round trip): a master that dies
        right after answering then loses no acknowledged vote to its replica's promotion.
        Past `replica_wait_ms` (no replica answers) the vote is answered all the same: it
        counted on the master."""
        if not self.replica_acks:
            return self._run(script, keys, args)
        for command, code in (("EVALSHA", script.sha), ("EVAL", script.script)):
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command(command, code, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self.replica_acks, self.replica_wait_ms)
            result, _ = pipe.execute(raise_on_error=False)
            if not isinstance(result, redis.exceptions.NoScriptError):
                break
        if isinstance(result, Exception):
            raise result
        return result

    def ping(self) -> bool:
        """Whether Redis answers; on a cluster, whether any master does. One dead shard stops
        only its own sites, and must not take every app server out of its load balancer."""
        if not isinstance(self.client, redis.RedisCluster):
            return bool(self.client.ping())
        failure: redis.RedisError = redis.ConnectionError("no master of the cluster is known")
        for node in self.client.get_primaries():
            try:
                return bool(self.client.ping(target_nodes=node))
            except redis.RedisError as error:
                failure = error
        raise failure

    # Sites -------------------------------------------------------------------------------

    def get_site(self, name: str) -> Site | None:
        """The site's record: every vote and read needs it, so each process keeps every
        record it has looked up (None for an unknown site) and serves it from memory.

        A record older than SITE_CACHE_SECONDS is read again in the background while the
        held one is served: a request never waits on `rx:sites` (one shard of a cluster)
        for a site the process already knows, and a slow or dead shard there stops only the
        lookups of sites the process has never seen. The first lookup loads every record.
        """
        return self._sites.get(name)

    def forget_sites(self, *names: str) -> None:
        """The records of these sites changed (a `site_channel` announcement): read them
        afresh now, on the caller's time (the live listener's), so the next request and
        the streams' next event have the new record. If that read fails, the held record
        is served and refreshed later.

        Without names (the live listener resubscribed, maybe during a failover, and may
        have missed announcements): every held record becomes due for a refresh in the
        background; requests keep being served from memory."""
        self._sites.forget(*names)

    def save_site(self, site: Site) -> Site:
        """Store the record and announce it, so every server process reads it afresh."""
        if not site.created:
            existing = self.client.hget(SITES_KEY, site.name)
            created = Site.from_json(site.name, existing).created if existing else time.time()
            site = replace(site, created=created)
        record = site.to_json()
        self.client.hset(SITES_KEY, site.name, record)
        self._sites.hold(site.name, Site.from_json(site.name, record))
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
        self._sites.hold(name, BUILTIN_SITES.get(name))
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
            with self._secret_lock:
                if not self.secret:
                    # One secret for every worker and app server sharing this Redis.
                    self.client.set(SECRET_KEY, secrets.token_urlsafe(32), nx=True)
                    self.secret = self.client.get(SECRET_KEY)
        return self.secret

    def daily_salt(self, day: str) -> str:
        """A random salt per UTC day, gone 48 h after its day starts: yesterday's hashes
        cannot be linked.

        Held per process; every worker and app server reads the same salt from Redis. The
        next day's salt is created and read in the background as soon as a day's is held,
        so midnight needs no Redis call on the request path, whatever shard holds the new
        day's key."""
        return self._salts.get(day)

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
        result = self._run_acknowledged(self._vote, keys, args)
        if result[0] == "!":
            raise RateLimited(result[1], int(result[2]), site.name)
        previous, flat = result
        counts = decode_counts(flat)
        self._changed(site.name, article, counts)
        return (previous or None), counts

    def _changed(self, site: str, article: str, counts: dict[str, int] | None) -> None:
        for callback in self.on_change:
            callback(site, article, counts)

    def reader_choice(self, site: str, article: str, reader: str) -> str | None:
        return self.client.hget(readers_key(site, article), reader)

    def own_reactions(
        self,
        site: str,
        reader: str,
        erase: bool = False,
        only: str = "",
        address: str = "",
        now: float | None = None,
        limits: Limits | None = None,
    ) -> list[OwnReaction]:
        """The reactions a reader (its hash) has given on the site; with `erase`, taken back
        in one atomic step with the counts (only the article `only`, if given), and what was
        taken back is returned. Raises RateLimited when the address block is over its limit
        of such calls (none without an address: the server's own calls)."""
        now = time.time() if now is None else now
        limits = limits or (self.limits if address else Limits())
        keys, args = mine_arguments(site, reader, erase, only, now, address, limits)
        flat = self._run(self._mine, keys, args)
        if flat and flat[0] == "!":
            raise RateLimited(flat[1], int(flat[2]), site)
        found = []
        for i in range(0, len(flat), 4):
            article, reaction, meta, counts = flat[i : i + 4]
            info = json.loads(meta) if meta else {}
            found.append(
                OwnReaction(
                    article, reaction, str(info.get("url") or ""), str(info.get("title") or "")
                )
            )
            if erase:
                self._changed(site, article, decode_counts(counts))
        return found

    def own_reactions_in_sets(
        self,
        scopes: tuple[str, ...],
        reader: str,
        erase: bool = False,
        only: str = "",
        address: str = "",
        now: float | None = None,
    ) -> list[tuple[str, OwnReaction]]:
        """`own_reactions` in each of these reaction sets of one site (their scopes, see
        `keys.scope`), as (scope, reaction). Each set's list or erase is one atomic script, as
        the default set's is, run one set after another: an erase cut short (a 429, a lost
        connection) leaves the later sets' reactions in place, listed and erasable again.
        Each set counts against the address block's limit, which is therefore the limit per
        call times the number of sets: the limit counts requests, whatever the sets."""
        limits = None
        if address and len(scopes) > 1:
            share = self.limits.own_data_per_minute * len(scopes)
            limits = replace(self.limits, own_data_per_minute=share)
        return [
            (name, found)
            for name in scopes
            for found in self.own_reactions(name, reader, erase, only, address, now, limits)
        ]

    def index_own_reactions(self, site: str, batch: int = 500) -> int:
        """Adds every reader of the site's articles to their own index, so that choices made
        before the index existed can be listed and taken back too; returns how many entries
        were added (0 when run again). A batch of one article's readers per call."""
        added = 0
        for article, _ in self.client.hscan_iter(meta_key(site), count=batch):
            readers = [
                r for r, _ in self.client.hscan_iter(readers_key(site, article), count=batch)
            ]
            for start in range(0, len(readers), batch):
                keys, args = index_readers_arguments(site, article, readers[start : start + batch])
                added += int(self._run(self._index_readers, keys, args))
        return added

    def reset_article(self, site: Site, article: str) -> int:
        keys, args = reset_arguments(site, article)
        removed = int(self._run(self._reset, keys, args))
        self._changed(site.name, article, None)
        return removed

    def import_counts(
        self, site: Site, article: str, counts: dict[str, int], url: str, title: str
    ) -> int:
        """Make `counts` the article's imported starting counts; returns the change in total."""
        keys, args = import_arguments(site, article, counts, url, title, time.time())
        change = int(self._run(self._import, keys, args))
        self._changed(site.name, article, None)
        return change

    # Statistics for the admin pages: folds, pipelines and indexes, never a round trip per
    # article ------------------------------------------------------------------------------

    def fold(self, site: str) -> None:
        """Apply the site's pending votes to its statistics (see lua/fold.lua), before reading
        them. Its own round trip: redis-py's cluster pipelines refuse scripts."""
        self._run(self._fold, *fold_script_arguments(site))

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
