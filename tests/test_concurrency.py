"""Many readers at once on a real Redis: no lost updates, no negative counts."""

import http.client
import json
import random
import threading
from collections import Counter
from urllib.parse import urlsplit

from tests.conftest import BROWSER_UA
from widget.reactions import DEFAULT_REACTIONS
from widget.store import Store

READERS = 50
OPERATIONS = 20
CHOICES = [r.id for r in DEFAULT_REACTIONS] + [None]


def post(base: str, body: dict) -> dict:
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
        assert response.status == 200, response.read()
        return json.loads(response.read())
    finally:
        connection.close()


def test_parallel_readers_end_with_a_replay_of_their_final_choices(live_server, redis_client):
    final: dict[str, str | None] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(READERS)

    def reader(number: int) -> None:
        rng = random.Random(number)
        token = f"reader-{number:04d}-" + "x" * 16
        try:
            start.wait()
            for _ in range(OPERATIONS):
                choice = rng.choice(CHOICES)
                body = {"site": "demo", "article": "hot-post", "reader": token, "reaction": choice}
                assert post(live_server.url, body)["mine"] == choice
                final[token] = choice
        except BaseException as error:  # reported below, with the failing thread's error
            errors.append(error)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]

    expected = Counter(choice for choice in final.values() if choice)
    stored = {k: int(v) for k, v in redis_client.hgetall("rx:{demo}:a:hot-post").items()}
    assert stored == dict(expected)
    assert all(count > 0 for count in stored.values())
    assert redis_client.hlen("rx:{demo}:r:hot-post") == sum(expected.values())
    Store(redis_client).fold("demo")  # the statistics take votes in batches
    assert redis_client.zscore("rx:{demo}:index", "hot-post") == sum(expected.values())


def test_fifty_identical_posts_count_once(live_server, redis_client):
    body = {"site": "demo", "article": "p", "reader": "same-reader-" + "y" * 12, "reaction": "sad"}
    threads = [threading.Thread(target=post, args=(live_server.url, body)) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redis_client.hgetall("rx:{demo}:a:p") == {"sad": "1"}
