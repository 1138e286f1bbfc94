"""A popular article: however many readers watch it live, a server process writes a bounded
number of events a second to their streams, so that the votes keep flowing. An article's
streams get an event at most once per interval, which grows with the process's open streams;
a change after a quiet spell goes out at once; each change is encoded once, whatever the
audience. (The reader's own vote shows from the POST's answer, never from the stream:
tests/test_browser.py, test_a_reader_reacts_changes_undoes_and_reloads.)"""

from __future__ import annotations

import contextlib
import queue
import urllib.request
import uuid

import pytest
from gunicorn.http import wsgi

from tests.processes import ServerProcesses
from tests.test_cli import ONE_WRITE_RESPONSE, RecordingSocket, written
from tests.test_metrics import figure
from tests.test_stream_caps import Stream
from widget import config
from widget.config import ConfigError
from widget.fanout import (
    END_OF_STREAM,
    MAX_INTERVAL_SECONDS,
    MIN_INTERVAL_SECONDS,
    WAKE_GROUP,
    Audience,
    Inbox,
    delivery_interval,
    next_due,
)

TOKEN = "metrics-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("streams", "interval"),
    [
        (0, MIN_INTERVAL_SECONDS),
        (1, MIN_INTERVAL_SECONDS),
        (500, MIN_INTERVAL_SECONDS),  # 20 events a second each: as live as it gets
        (1_000, 0.1),
        (5_000, 0.5),
        (10_000, MAX_INTERVAL_SECONDS),
        (50_000, MAX_INTERVAL_SECONDS),  # one a second still feels live
    ],
)
def test_an_articles_interval_grows_with_the_process_audience(streams, interval):
    assert delivery_interval(streams, writes_per_second=10_000) == pytest.approx(interval)


@pytest.mark.parametrize("share", [0.0001, 0.01, 0.05, 0.0501, 0.2, 0.7777, 1.0])
@pytest.mark.parametrize("writes_per_second", [1_000, 10_000])
def test_the_writes_stay_within_the_bound_whatever_the_audience(share, writes_per_second):
    """Every article changing all the time, each stream gets one event per interval; up to
    the audience the per-process cap keeps within (`share` of it)."""
    streams = max(1, round(share * writes_per_second * MAX_INTERVAL_SECONDS))
    writes = streams / delivery_interval(streams, writes_per_second)

    assert writes <= writes_per_second * (1 + 1e-9)


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_a_bad_fan_out_budget_stops_the_server_naming_its_variable(value):
    with pytest.raises(ConfigError, match="REACTIONS_LIVE_WRITES_PER_SECOND"):
        config.load({"REACTIONS_LIVE_WRITES_PER_SECOND": value})


@pytest.mark.parametrize(
    ("last_sent", "now", "interval", "due"),
    [
        (None, 100.0, 1.0, 100.0),  # never sent: at once
        (98.5, 100.0, 1.0, 100.0),  # after a quiet spell: at once
        (99.0, 100.0, 1.0, 100.0),  # exactly an interval later
        (99.8, 100.0, 1.0, 100.8),  # within an interval: at its end
        (99.99, 100.0, MIN_INTERVAL_SECONDS, 100.04),
    ],
)
def test_a_change_goes_out_at_once_after_a_quiet_spell_else_at_the_intervals_end(
    last_sent, now, interval, due
):
    assert next_due(last_sent, now, interval) == pytest.approx(due)


def test_every_stream_of_an_audience_gets_the_event_group_after_group():
    audience = Audience()
    inboxes = [Inbox(audience) for _ in range(2 * WAKE_GROUP + 1)]

    audience.send("event: counts")

    assert [inbox.get(timeout=5) for inbox in inboxes] == ["event: counts"] * len(inboxes)


def test_a_stream_that_fell_behind_skips_to_the_newest_counts():
    audience = Audience()
    inbox = Inbox(audience)

    audience.send("older counts")
    audience.send("newest counts")

    assert inbox.get(timeout=5) == "newest counts"
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.01)


def test_ending_an_audience_ends_the_streams_open_then_not_later_ones():
    audience = Audience()
    before = Inbox(audience)

    audience.end()
    after = Inbox(audience)
    audience.send("counts")

    assert before.get(timeout=5) is END_OF_STREAM
    assert after.get(timeout=5) == "counts"


@pytest.fixture
def serve(tmp_path, redis_server, redis_client):
    servers = []

    def start(**env):
        server = ServerProcesses(
            tmp_path, redis_server.url, 1, REACTIONS_METRICS_TOKEN=TOKEN, **env
        ).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def metrics(server) -> str:
    request = urllib.request.Request(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.read().decode()


def test_a_burst_of_votes_reaches_a_watcher_as_fewer_events_with_the_final_counts(serve):
    # One event a second at most per article: a burst within it is one or two events.
    server = serve(REACTIONS_LIVE_WRITES_PER_SECOND="1")
    article = f"burst-{uuid.uuid4().hex[:8]}"
    votes = 20

    with server.stream("demo", article) as events:
        assert next(events)["total"] == 0
        for number in range(votes):
            reaction = "happy" if number % 4 else "sad"
            server.vote(f"reader-{number:04d}-aaaaaaaaaaaa", reaction, article)
        received = []
        while not received or received[-1]["total"] < votes:
            received.append(next(events))

    assert len(received) < votes
    final = {r["id"]: r["count"] for r in received[-1]["reactions"]}
    assert final["happy"] == 15 and final["sad"] == 5
    assert final == server.counts(article)


def test_each_change_is_encoded_once_however_many_watch(serve):
    server = serve()
    article = f"watched-{uuid.uuid4().hex[:8]}"
    watchers, votes = 30, 3
    streams = [Stream(server.port, "127.0.0.2", article) for _ in range(watchers)]
    with contextlib.ExitStack() as closing:
        for stream in streams:
            closing.callback(stream.close)
        assert {stream.status for stream in streams} == {200}
        before = metrics(server)

        for number in range(1, votes + 1):
            server.vote(f"reader-{number:04d}-aaaaaaaaaaaa", "happy", article)
            for stream in streams:  # each vote its own change
                stream.wait_for(f'"total":{number},'.encode())
        after = metrics(server)

    def moved(name: str) -> float:
        return figure(after, name) - figure(before, name)

    assert moved("reactions_live_events_total") == votes
    assert moved("reactions_live_writes_total") == votes * watchers


def test_a_stream_chunk_the_socket_takes_in_part_is_written_whole():
    """Each live event goes out in one send(), the rest after it when the buffer was full,
    framed byte for byte as gunicorn frames it."""
    answer = ("GET", "200 OK", [("Content-Type", "text/event-stream")])
    events = [b"data: 1\n\n", b"data: 22\n\n"]

    partly = written(ONE_WRITE_RESPONSE, *answer, events, RecordingSocket(takes=5))

    assert b"".join(partly) == b"".join(written(wsgi.Response, *answer, events))
    assert partly[1:5] == [b"9\r\nda", b"ta: 1\n\n\r\n", b"A\r\nda", b"ta: 22\n\n\r\n"]
