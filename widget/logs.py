"""One line per notable event (start, stop, Redis lost and back, rate-limit bursts, admin
logins, imports), plain by default or one JSON object per line (REACTIONS_LOG_FORMAT=json).

Every line carries a time (UTC), a level and an event name, then the event's fields. No line
holds a raw client address or a reader token: where an address matters, the caller passes the
address fingerprint the app already computes (widget.security.address_fingerprint).

Standard library only: gunicorn's config file loads this module by its path, before a worker
may import the package (see widget/gunicorn_conf.py).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

FORMATS = ("plain", "json")
# Every logger of the package ("widget", "widget.live", …) writes through this one's handler;
# Flask's app.logger is this logger too, so it adds no handler of its own.
LOGGER = "widget"
events = logging.getLogger(f"{LOGGER}.events")

# At most one line per site and reason (and per login address) in this many seconds.
BURST_SECONDS = 60.0
# Field values a plain line shows without quotes: anything else is JSON-quoted, so that a
# value sent by a client can never start a line of its own.
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/+@")


def utc_time(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def event_of(record: logging.LogRecord) -> str:
    """The record's event name: the one `event()` gave, else the logger's name (a warning
    of widget.live), or "gunicorn" for gunicorn's own lines."""
    name = getattr(record, "event", None) or record.name
    return "gunicorn" if name == "gunicorn.error" else name


def shown(value: object) -> str:
    text = str(value)
    return text if text and set(text) <= _BARE else json.dumps(text, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """`TIME LEVEL EVENT message key=value …`: for a terminal or journald."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        parts = [utc_time(record.created), record.levelname, event_of(record)]
        message = record.getMessage()
        if message:
            parts.append(" ".join(message.splitlines()))
        parts.extend(f"{key}={shown(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(shown(self.formatException(record.exc_info)))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, message, pid, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": utc_time(record.created),
            "level": record.levelname.lower(),
            "event": event_of(record),
            "message": record.getMessage(),
            "pid": record.process,
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else PlainFormatter()


class EventHandler(logging.StreamHandler):
    """The package's handler, found again (not added twice) when a process makes more apps.
    It writes to whatever sys.stderr is at the time, as logging's own last resort does."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup(log_format: str = "plain") -> None:
    """Send the package's log lines to stderr in `log_format`, at INFO and above."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.INFO)
    handler = next((h for h in logger.handlers if isinstance(h, EventHandler)), None)
    if handler is None:
        handler = EventHandler()
        logger.addHandler(handler)
    handler.setFormatter(formatter(log_format))


def event(name: str, message: str = "", level: int = logging.INFO, **fields: object) -> None:
    """Log one event: `name` is stable (a collector filters on it), `message` is for people."""
    events.log(level, message, extra={"event": name, "fields": fields})


class Throttle:
    """Lets through the first occurrence of a key, then at most one per `seconds`, and counts
    what it held back meanwhile: one line per burst, not one per refused request."""

    def __init__(self, seconds: float = BURST_SECONDS, clock=time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.lock = threading.Lock()
        self.last: dict[tuple, tuple[float, int]] = {}

    def passes(self, key: tuple) -> int:
        """0 to stay quiet; else how many occurrences this line stands for (this one
        included)."""
        now = self.clock()
        with self.lock:
            since, held = self.last.get(key, (-self.seconds, 0))
            if now - since < self.seconds:
                self.last[key] = (since, held + 1)
                return 0
            if len(self.last) > 10_000:  # many sites or addresses: forget the oldest
                self.last = {k: v for k, v in self.last.items() if now - v[0] < self.seconds}
            self.last[key] = (now, 0)
            return held + 1


class Outage:
    """Whether this process's requests find Redis unreachable: one line when they start
    failing, one when one succeeds again, never one per request."""

    def __init__(self):
        self.since: float | None = None

    def lost(self, error: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            event(
                "redis.lost",
                "requests cannot reach Redis; answering 503",
                logging.ERROR,
                error=type(error).__name__,
            )

    def back(self) -> None:
        since, self.since = self.since, None
        if since is not None:
            event(
                "redis.back",
                "requests reach Redis again",
                logging.WARNING,
                seconds=round(time.monotonic() - since, 1),
            )
