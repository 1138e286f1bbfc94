"""The site records and daily salts each process holds, refreshed in the background.

`rx:sites` and `rx:salt:<day>` are single keys: on a cluster each lives on one shard, and
every request needs them. The Store asks these holders instead of Redis; they ask Redis on the
request path only for what the process has never held, so a shard that is down or slow stops
only the sites whose own keys live there.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

import redis

from .days import day_start, next_utc_day
from .keys import SITES_KEY, salt_key
from .records import BUILTIN_SITES, Site

# A held site record is read again (in the background) once it is this old.
SITE_CACHE_SECONDS = 5.0
# After a failed read of the site records, or of tomorrow's salt, the next waits this long:
# an unreachable shard is asked about once a second per process, not by every request.
RETRY_SECONDS = 1.0
# A day's salt lives until at least this long after its day starts (the privacy rule).
SALT_SECONDS = 48 * 3600
# The age of a record that a change announced, or a resubscription, made due for a refresh.
_DUE = float("-inf")

log = logging.getLogger(__name__)
_warned: dict[str, float] = {}


class SiteRecords:
    """Every site record this process has looked up (None for an unknown site), kept for the
    process's life and read again in the background once it is SITE_CACHE_SECONDS old."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # name -> (monotonic time it was read, record or None)
        self._held: dict[str, tuple[float, Site | None]] = {}
        self._loaded = False
        self._due: set[str] = set()
        self._refreshing = False
        self._retry_at = 0.0
        self._generation = 0
        # Held for moments only, never across a Redis call: `_load_lock` is.
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    def get(self, name: str) -> Site | None:
        """The held record, served from memory; one older than SITE_CACHE_SECONDS is read
        again in the background meanwhile. A site not held yet is read on the caller's time."""
        held = self._held.get(name)
        if held is None:
            return self._read(name)
        read_at, site = held
        if time.monotonic() - read_at >= SITE_CACHE_SECONDS:
            self._refresh_later(name)
        return site

    def hold(self, name: str, site: Site | None) -> None:
        """This process changed the record: hold the new one at once (and drop a refresh
        on its way, which may have read the old one)."""
        with self._lock:
            self._generation += 1
            self._held[name] = (time.monotonic(), site)

    def forget(self, *names: str) -> None:
        """The records of these sites changed: read them afresh now, on the caller's time.
        If that read fails, the held record is served and refreshed later.

        Without names: every held record becomes due for a refresh in the background;
        requests keep being served from memory."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            if not names:
                self._held = {name: (_DUE, site) for name, (_, site) in self._held.items()}
                return
            held = [name for name in names if name in self._held]
            for name in held:
                self._held[name] = (_DUE, self._held[name][1])
        if not held:
            return  # read on its first lookup
        try:
            raw = self._read_records(self.client.hmget, SITES_KEY, held)
        except redis.RedisError as error:
            _warn("site records: cannot read a changed record", error)
            return
        self._keep(generation, time.monotonic(), dict(zip(held, raw, strict=True)))

    def _read(self, name: str) -> Site | None:
        """Reads a record the process does not hold yet, on the caller's time: all of them
        at the first lookup (one HGETALL), so a new worker knows every site at once."""
        if not self._loaded:
            with self._load_lock:
                if not self._loaded:
                    generation = self._generation
                    raw = self._read_records(self.client.hgetall, SITES_KEY)
                    sites = self._keep(
                        generation, time.monotonic(), raw | {name: raw.get(name)}, complete=True
                    )
                    self._loaded = True
                    return sites[name]
        generation = self._generation
        raw = self._read_records(self.client.hget, SITES_KEY, name)
        return self._keep(generation, time.monotonic(), {name: raw})[name]

    def _read_records(self, command: Callable, *args: object):
        """`command(*args)`, a read of `rx:sites`, unless one failed less than RETRY_SECONDS
        ago: then a ConnectionError (a 503) at once, not a wait on a shard known to be down."""
        if time.monotonic() < self._retry_at:
            raise redis.ConnectionError("the site records were unreachable a moment ago")
        try:
            return command(*args)
        except redis.RedisError:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            raise

    def _keep(
        self,
        generation: int,
        read_at: float,
        raw: dict[str, str | None],
        complete: bool = False,
    ) -> dict[str, Site | None]:
        """Holds the records read (`complete`: every stored record, so that held names
        missing from it are unknown now) and returns them. Not held if a change was
        announced while the read was on its way: those sites stay due for a refresh."""
        sites = {name: _site_record(name, value) for name, value in raw.items()}
        with self._lock:
            if generation == self._generation:
                fresh = {name: (read_at, site) for name, site in sites.items()}
                if complete:
                    fresh |= {
                        name: (read_at, BUILTIN_SITES.get(name))
                        for name in self._held.keys() - fresh.keys()
                    }
                self._held.update(fresh)
        return sites

    def _refresh_later(self, name: str) -> None:
        """Queues the site for the background refresh, and starts it unless it runs (one
        at a time: it reads every queued record in one HMGET) or a read failed just now."""
        with self._lock:
            self._due.add(name)
            if self._refreshing or time.monotonic() < self._retry_at:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh, name="reactions-site-refresh", daemon=True).start()

    def _refresh(self) -> None:
        while True:
            with self._lock:
                names, self._due = sorted(self._due), set()
                generation = self._generation
                if not names:
                    self._refreshing = False
                    return
            try:
                raw = self._read_records(self.client.hmget, SITES_KEY, names)
            except redis.RedisError as error:
                # The held records stay due: the next lookup after RETRY_SECONDS tries again.
                _warn("site records: refresh failed", error)
                with self._lock:
                    self._refreshing = False
                return
            self._keep(generation, time.monotonic(), dict(zip(names, raw, strict=True)))


class DailySalts:
    """The salt of each UTC day, held (yesterday's, today's and tomorrow's); the next day's
    is created and read in the background as soon as a day's is held."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._salts: dict[str, str] = {}
        self._ahead = ""  # the day whose next day's salt is held
        self._fetching = False
        self._retry_at = 0.0
        # Held for moments only, never across a Redis call.
        self._lock = threading.Lock()

    def get(self, day: str) -> str:
        """The day's salt; read (or created) on the caller's time only if it is not held."""
        salt = self._salts.get(day)
        if salt is None:
            salt = self._read(day, SALT_SECONDS)
            self._hold(day, salt)
        if self._ahead != day:
            self._fetch_next_later(day)
        return salt

    def _read(self, day: str, lifetime: float) -> str:
        key = salt_key(day)
        pipe = self.client.pipeline(transaction=False)
        pipe.set(key, secrets.token_hex(16), nx=True, ex=max(1, int(lifetime)))
        pipe.get(key)
        return pipe.execute()[1]

    def _hold(self, day: str, salt: str) -> None:
        with self._lock:
            # Today's and tomorrow's, and yesterday's for requests that began before midnight.
            self._salts = dict(sorted((self._salts | {day: salt}).items())[-3:])

    def _fetch_next_later(self, day: str) -> None:
        with self._lock:
            if self._fetching or time.monotonic() < self._retry_at:
                return
            self._fetching = True
        threading.Thread(
            target=self._fetch_next, args=(day,), name="reactions-salt", daemon=True
        ).start()

    def _fetch_next(self, day: str) -> None:
        following = next_utc_day(day)
        try:
            # Created up to a day ahead, it still lives until 48 h after its own day starts.
            lifetime = day_start(following) + SALT_SECONDS - time.time()
            self._hold(following, self._read(following, lifetime))
            self._ahead = day
        except redis.RedisError as error:
            _warn("daily salt: cannot fetch the next day's", error)
            self._retry_at = time.monotonic() + RETRY_SECONDS
        finally:
            self._fetching = False


def _warn(message: str, error: Exception) -> None:
    """One line per kind of failure and 10 s: a shard down for minutes must not flood (or
    block on) the log."""
    now = time.monotonic()
    if now - _warned.get(message, float("-inf")) >= 10:
        _warned[message] = now
        log.warning("%s (%s)", message, type(error).__name__)


def _site_record(name: str, raw: str | None) -> Site | None:
    return Site.from_json(name, raw) if raw else BUILTIN_SITES.get(name)
