"""The fan-out of live counts within a process: each article's audience of open streams, the
newest event they wait on, and the rule that spaces an article's events as the audience grows
(`delivery_interval`), so a process writes a bounded number of events a second whatever the
audience. `live.Hub` keeps one Audience per watched article."""

from __future__ import annotations

import queue
import threading
import time

# An article's streams get at most one event per interval, from the least (a small audience:
# as live as before) to the most (one a second on a busy article still feels live); between
# the two it grows with the process's open streams (see delivery_interval).
MIN_INTERVAL_SECONDS = 0.05
MAX_INTERVAL_SECONDS = 1.0
# An article's streams are woken this many at a time, with a pause between two groups in
# which a gevent worker's event loop polls its sockets (any timer does; sleep(0) does not).
WAKE_GROUP = 256
WAKE_PAUSE_SECONDS = 0.0001
# In a stream's inbox: the subscription was lost, the stream ends.
END_OF_STREAM = None


def delivery_interval(streams: int, writes_per_second: int) -> float:
    """The least time between two events of an article, in a process with `streams` open.

    Each stream then gets at most one event per interval whichever articles change, so the
    process writes at most `writes_per_second` events a second to its streams, whatever the
    audience, up to `writes_per_second * MAX_INTERVAL_SECONDS` streams; beyond, one event a
    second per stream, up to the per-process cap."""
    return min(max(streams / writes_per_second, MIN_INTERVAL_SECONDS), MAX_INTERVAL_SECONDS)


def next_due(last_sent: float | None, now: float, interval: float) -> float:
    """When an article's change may go out to its streams: at once after a quiet spell of an
    interval (a lone vote is not delayed), else once the interval since its last event is
    over."""
    return now if last_sent is None else max(now, last_sent + interval)


class Audience:
    """The open streams of one article in a process: the newest event sent them, and the
    signals they wait on. A change is thus one assignment and a signal per group of streams,
    not one queue entry per stream, and a stream that fell behind skips to the newest counts.

    The streams are woken a group at a time, the event loop polling between two groups:
    thousands of streams woken at once would hold a gevent worker for longer than a vote's
    Redis timeout."""

    def __init__(self) -> None:
        self.inboxes: set[Inbox] = set()
        # (number of events sent so far, the newest event, the number that ended the
        # streams open before it): replaced whole, so a reader sees one consistent triple.
        self.latest: tuple[int, str | None, int] = (0, None, 0)
        self._signals: list[threading.Event] = [threading.Event()]

    def join(self, inbox: Inbox) -> int:
        """The group of a new stream: about WAKE_GROUP streams in each."""
        self.inboxes.add(inbox)
        group = (len(self.inboxes) - 1) // WAKE_GROUP
        if group >= len(self._signals):
            self._signals.append(threading.Event())
        return group

    def send(self, event: str) -> None:
        number, _, ended = self.latest
        self._publish((number + 1, event, ended))

    def end(self) -> None:
        """Ends the streams open now; those opened afterwards go on."""
        number, event, _ = self.latest
        self._publish((number + 1, event, number + 1))

    def _publish(self, latest: tuple[int, str | None, int]) -> None:
        # The new state first, then new signals, then the old ones set: a stream that took
        # an old signal is woken, one that takes a new signal already sees the new state.
        self.latest = latest
        signals = self._signals
        self._signals = [threading.Event() for _ in signals]
        for number, signal in enumerate(signals):
            if number:
                time.sleep(WAKE_PAUSE_SECONDS)
            signal.set()

    def wait(self, group: int, seen: int, timeout: float) -> tuple[int, str | None, int]:
        # Any signal of the moment is set by the next event: a group that a concurrent
        # publish left out of the new list waits on another one.
        signals = self._signals
        changed = signals[min(group, len(signals) - 1)]
        if self.latest[0] == seen:
            changed.wait(timeout)
        return self.latest


class Inbox:
    """One stream's view of its article's audience, with queue.Queue's `get`: the newest
    event it has not had, END_OF_STREAM once its stream is ended, queue.Empty when nothing
    came within `timeout`."""

    __slots__ = ("audience", "group", "opened", "seen")

    def __init__(self, audience: Audience):
        self.audience = audience
        self.opened = self.seen = audience.latest[0]
        self.group = audience.join(self)

    def get(self, timeout: float) -> str | None:
        number, event, ended = self.audience.wait(self.group, self.seen, timeout)
        if ended > self.opened:
            return END_OF_STREAM
        if number == self.seen:
            raise queue.Empty
        self.seen = number
        return event
