"""Redis stalls under load: every request still gets a quick 503 with Retry-After, never a 500
and never a wait much longer than the configured Redis timeout; the server recovers by itself."""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.processes import ServerProcesses
from tests.servers import request_json, wait_until
from widget.embedded_redis import EmbeddedRedis
from widget.store import connect

REDIS_TIMEOUT = 0.5
PARALLEL_CLIENTS = 150
STALLED_REQUESTS = 1200


@pytest.fixture
def stallable_redis(tmp_path):
    """A Redis of this test's own, which the test may freeze with SIGSTOP."""
    backing = EmbeddedRedis(str(tmp_path / "redis")).start()
    yield backing
    os.kill(backing.process.pid, signal.SIGCONT)
    backing.stop()


def requests_during_a_stall(server_url: str) -> list[tuple[str, dict | None]]:
    """Reads of articles no worker has cached yet, batches, votes and readiness checks."""
    requests = []
    for n in range(STALLED_REQUESTS):
        kind = n % 4
        if kind == 0:
            requests.append((f"{server_url}/api/v1/reactions?site=demo&article=stall-{n}", None))
        elif kind == 1:
            url = f"{server_url}/api/v1/reactions/batch?site=demo&article=b-{n}&article=c-{n}"
            requests.append((url, None))
        elif kind == 2:
            vote = {
                "site": "demo",
                "article": f"stall-{n}",
                "reader": f"reader-stall-{n:06d}-aaaa",
                "reaction": "happy",
            }
            requests.append((f"{server_url}/api/v1/reactions", vote))
        else:
            requests.append((f"{server_url}/readyz", None))
    return requests


def test_a_stalled_redis_under_load_is_a_quick_503_for_every_request(tmp_path, stallable_redis):
    server = ServerProcesses(
        tmp_path / "data",
        stallable_redis.url,
        workers=1,
        REACTIONS_REDIS_TIMEOUT=str(REDIS_TIMEOUT),
    ).start()
    try:
        # The site is cached by the worker and the pool holds live connections: the stall
        # catches the server in its ordinary state.
        assert request_json(f"{server.url}/api/v1/reactions?site=demo&article=warm")[0] == 200
        os.kill(stallable_redis.process.pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(PARALLEL_CLIENTS) as clients:
                answers = list(
                    clients.map(
                        lambda request: request_json(*request, origin=server.url),
                        requests_during_a_stall(server.url),
                    )
                )
        finally:
            os.kill(stallable_redis.process.pid, signal.SIGCONT)

        statuses = Counter(status for status, *_ in answers)
        assert statuses == {503: STALLED_REQUESTS}, [a for a in answers if a[0] != 503][:3]
        for _, headers, payload, _ in answers:
            assert payload["error"] == "store_unavailable", payload
            assert int(headers["Retry-After"]) > 0
        seconds = sorted(elapsed for *_, elapsed in answers)
        print(
            f"\n{len(answers)} requests from {PARALLEL_CLIENTS} clients during the stall, "
            f"all 503 with Retry-After; seconds: median {statistics.median(seconds):.3f}, "
            f"p90 {seconds[int(len(seconds) * 0.9)]:.3f}, p99 {seconds[int(len(seconds) * 0.99)]:.3f}, "
            f"max {seconds[-1]:.3f} (REACTIONS_REDIS_TIMEOUT={REDIS_TIMEOUT})"
        )
        # Each request gives up on Redis within the timeout plus a little: not a reconnect,
        # a retry or a wait for a pooled connection on top (before, the slowest took 2.4 s).
        # The margin is wide because these seconds include 150 client threads queueing on a
        # shared 2-core machine; the figures that matter are printed above.
        assert seconds[-1] < REDIS_TIMEOUT * 3, seconds[-20:]

        # Redis is back: the same server answers and counts again, without a restart.
        wait_until(lambda: request_json(f"{server.url}/readyz")[0] == 200, timeout=10)
        vote = {
            "site": "demo",
            "article": "after-the-stall",
            "reader": "reader-after-stall-aaaa",
            "reaction": "sad",
        }
        status, _, payload, _ = request_json(f"{server.url}/api/v1/reactions", vote, server.url)
        assert status == 200 and payload["total"] == 1 and payload["mine"] == "sad"
    finally:
        code, output = server.stop()
    assert code == 0, output
    assert "WORKER TIMEOUT" not in output and "Traceback" not in output, output


@pytest.mark.parametrize("connection", ["pooled", "new"])
def test_a_store_call_on_a_stalled_redis_fails_once_within_its_timeout(stallable_redis, connection):
    """One call, one timeout: no reconnect, health check or retry adds another wait."""
    client = connect(stallable_redis.url, REDIS_TIMEOUT)
    if connection == "pooled":
        client.ping()
    os.kill(stallable_redis.process.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(redis.TimeoutError):
            client.hgetall("rx:{demo}:a:stalled")
    finally:
        elapsed = time.monotonic() - started
        os.kill(stallable_redis.process.pid, signal.SIGCONT)
    print(f"\n{connection} connection: gave up after {elapsed:.3f} s")
    assert REDIS_TIMEOUT <= elapsed < REDIS_TIMEOUT * 1.5
    # Redis is back: the same client answers again.
    assert client.hgetall("rx:{demo}:a:stalled") == {}
    client.close()
