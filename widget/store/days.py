"""UTC dates as the day keys and the admin's timelines spell them (yyyy-mm-dd)."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta


def utc_day(timestamp: float) -> str:
    return _utc_day(int(timestamp // 86400))


@functools.lru_cache(maxsize=8)
def _utc_day(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86400))


def last_days(days: int, now: float | None = None) -> list[str]:
    """The `days` UTC dates up to today, oldest first."""
    today = datetime.fromtimestamp(time.time() if now is None else now, UTC).date()
    return [(today - timedelta(days=offset)).isoformat() for offset in range(days - 1, -1, -1)]


def day_start(day: str) -> float:
    """The unix time at which a UTC date (yyyy-mm-dd) begins."""
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()


def next_utc_day(day: str) -> str:
    return (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
