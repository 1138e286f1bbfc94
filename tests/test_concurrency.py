"""Many readers at once on a real Redis: no lost updates, no negative counts."""

import concurrent.futures
import http.client
import json
import random
import threading
from collections import Counter
from urllib.parse import urlsplit

from tests.servers import BROWSER_UA
from widget.reactions import DEFAULT_REACTIONS
from widget.store import Store

READERS = 50
OPERATIONS = 20
CHOICES = [r.id for r in DEFAULT_REACTIONS] + [None]


def post(base: str, body: dict) -> tuple[int, dict]:
    """One vote; the status and body, for the main thread to assert on (an assertion in a
    plain thread only prints a warning)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(
            "POST",
            "/api/v1/reactions",
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Origin": base, "User-Agent": BROWSER_UA},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_parallel_readers_end_with_a_replay_of_their_final_choices(live_server, redis_client):
    start = threading.Barrier(READERS)

    def reader(number: int) -> list[tuple[str | None, int, dict]]:
        rng = random.Random(number)
        token = f"reader-{number:04d}-" + "x" * 16
        start.wait(timeout=30)
        answers = []
        for _ in range(OPERATIONS):
            choice = rng.choice(CHOICES)
            body = {"site": "demo", "article": "hot-post", "reader": token, "reaction": choice}
            answers.append((choice, *post(live_server.url, body)))
        return answers

    with concurrent.futures.ThreadPoolExecutor(READERS) as pool:
        # .result() raises here, in the main thread, whatever a reader's thread raised.
        runs = [future.result() for future in [pool.submit(reader, n) for n in range(READERS)]]

    for answers in runs:
        assert [(status, body["mine"]) for _, status, body in answers] == [
            (200, choice) for choice, _, _ in answers
        ]
    final = [answers[-1][0] for answers in runs]
    expected = Counter(choice for choice in final if choice)
    stored = {k: int(v) for k, v in redis_client.hgetall("rx:{demo}:a:hot-post").items()}
    assert stored == dict(expected)
    assert all(count > 0 for count in stored.values())
    assert redis_client.hlen("rx:{demo}:r:hot-post") == sum(expected.values())
    Store(redis_client).fold("demo")  # the statistics take votes in batches
    assert redis_client.zscore("rx:{demo}:index", "hot-post") == sum(expected.values())


def test_fifty_identical_posts_count_once(live_server, redis_client):
    body = {"site": "demo", "article": "p", "reader": "same-reader-" + "y" * 12, "reaction": "sad"}
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(lambda _: post(live_server.url, body), range(50)))
    assert [status for status, _ in answers] == [200] * 50
    assert all(answer["mine"] == "sad" and answer["total"] == 1 for _, answer in answers)
    assert redis_client.hgetall("rx:{demo}:a:p") == {"sad": "1"}
