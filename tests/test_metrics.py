"""An operator's Prometheus scrapes /metrics: the figures follow the votes, the refusals and
the live streams, summed over every worker of `reactions serve`, and only for the token."""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import shutil
import signal
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import ServerProcesses
from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, Server, free_port, wait_until
from tests.test_cli import gunicorn_pids
from tests.test_serve_recovery import exists, redis_pid
from widget import create_app
from widget.config import ConfigError

TOKEN = "metrics-token-0123456789abcdef"
ORIGIN = "http://localhost"  # the test client's own origin: the demo site accepts it
BEARER = {"Authorization": f"Bearer {TOKEN}"}
numbers = itertools.count()


def samples(text: str) -> dict[tuple, float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def figure(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: str, after: str, name: str, **labels) -> float:
    return figure(after, name, **labels) - figure(before, name, **labels)


@pytest.fixture
def client(app):
    app.config["REACTIONS_METRICS_TOKEN"] = TOKEN
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
    return client


def scrape(client) -> str:
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def vote(client, origin=ORIGIN, content_type="application/json", reaction="happy", **headers):
    body = (
        f'{{"site": "demo", "article": "watched", "reaction": "{reaction}", '
        f'"reader": "reader-{next(numbers):06d}-aaaaaaaaaaaa"}}'
    )
    return client.post(
        "/api/v1/reactions",
        data=body,
        content_type=content_type,
        headers={"Origin": origin, **headers},
    )


def test_without_a_token_setting_there_are_no_metrics(app):
    response = app.test_client().get("/metrics", headers=BEARER)
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789abcdef", f"Basic {TOKEN}", "Bearer", TOKEN],
)
def test_the_metrics_need_the_right_bearer_token(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "reactions_votes" not in response.get_data(as_text=True)


def test_prometheus_reads_the_metrics_with_the_token(client):
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"reactions_votes", "reactions_requests", "reactions_request_seconds"} <= names


@pytest.mark.parametrize("token", ["short", "sixteen chars\n..", "émoji-token-0123456789"])
def test_a_weak_or_unprintable_token_fails_at_start(token, redis_server):
    with pytest.raises(ConfigError, match="REACTIONS_METRICS_TOKEN"):
        create_app({"REDIS_URL": redis_server.url, "REACTIONS_METRICS_TOKEN": token})


def test_counted_votes_are_counted_with_their_request_and_timing(client):
    before = scrape(client)
    for _ in range(3):
        assert vote(client).get_json()["counted"] is True
    after = scrape(client)
    endpoint = "api.post_reaction"
    assert moved(before, after, "reactions_votes_total", outcome="counted") == 3
    assert moved(before, after, "reactions_votes_total", outcome="not_counted") == 0
    assert moved(before, after, "reactions_requests_total", endpoint=endpoint, status="200") == 3
    assert moved(before, after, "reactions_request_seconds_count", endpoint=endpoint) == 3
    assert moved(before, after, "reactions_request_seconds_sum", endpoint=endpoint) > 0
    assert moved(before, after, "reactions_redis_seconds_count", call="set_reaction") == 3


def test_a_bot_vote_counts_as_not_counted(client):
    before = scrape(client)
    answer = vote(client, **{"User-Agent": "curl/8.5.0"})
    assert answer.status_code == 200 and answer.get_json()["counted"] is False
    after = scrape(client)
    assert moved(before, after, "reactions_votes_total", outcome="not_counted") == 1
    assert moved(before, after, "reactions_votes_total", outcome="counted") == 0


@pytest.mark.parametrize(
    ("refusal", "status", "reason"),
    [
        ({"origin": "https://evil.example"}, "403", "origin_not_allowed"),
        ({"content_type": "text/plain"}, "415", "unsupported_media_type"),
        ({"reaction": "no-such-reaction"}, "400", "invalid_field"),
    ],
)
def test_a_refused_vote_counts_by_reason(client, refusal, status, reason):
    before = scrape(client)
    assert str(vote(client, **refusal).status_code) == status
    after = scrape(client)
    assert moved(before, after, "reactions_votes_refused_total", reason=reason) == 1
    assert moved(before, after, "reactions_votes_total", outcome="counted") == 0
    assert (
        moved(
            before, after, "reactions_requests_total", endpoint="api.post_reaction", status=status
        )
        == 1
    )


def test_a_rate_limited_vote_counts_as_refused(redis_server, redis_client):
    app = create_app(
        {
            "REDIS_URL": redis_server.url,
            "REACTIONS_SECRET_KEY": SECRET,
            "REACTIONS_METRICS_TOKEN": TOKEN,
        }
        | NO_LIMITS
        | {"REACTIONS_RATE_PER_MINUTE": 1}
    )
    try:
        client = app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = f"{BROWSER_UA} limited/{uuid.uuid4()}"
        before = scrape(client)
        statuses = [vote(client).status_code for _ in range(2)]
        after = scrape(client)
    finally:
        app.extensions["reactions_live"].stop()
    assert statuses == [200, 429]
    assert moved(before, after, "reactions_votes_refused_total", reason="rate_limited") == 1


def test_a_vote_while_redis_is_unreachable_counts_a_redis_error():
    app = create_app(
        {
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}",
            "REACTIONS_SECRET_KEY": SECRET,
            "REACTIONS_METRICS_TOKEN": TOKEN,
        }
    )
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
    before = scrape(client)
    assert vote(client).status_code == 503
    after = scrape(client)
    assert moved(before, after, "reactions_redis_errors_total", error="ConnectionError") == 1
    assert moved(before, after, "reactions_votes_refused_total", reason="store_unavailable") == 1


def test_the_open_streams_gauge_goes_up_and_down(client):
    def open_streams():
        return figure(scrape(client), "reactions_live_streams")

    before = open_streams()
    stream = client.get("/api/v1/stream?site=demo&article=watched", buffered=False)
    assert stream.status_code == 200
    next(stream.response)  # the first event: the stream is open
    assert open_streams() == before + 1
    stream.close()
    assert open_streams() == before


# Across the workers of `reactions serve`.


def served(server: Server) -> str:
    request = urllib.request.Request(f"{server.url}/metrics", headers=BEARER)
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def counted_by_worker(directory) -> dict[int, float]:
    """Each worker's own count of counted votes, from its file in the metrics directory."""
    counts = {}
    for name in os.listdir(directory):
        if not (name.startswith("counter_") and name.endswith(".db")):
            continue
        alone = os.path.join(directory, f"alone-{name}")
        os.mkdir(alone)
        try:
            shutil.copy(os.path.join(directory, name), alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=alone)
            text = generate_latest(registry).decode()
        finally:
            shutil.rmtree(alone)
        counts[int(name[len("counter_") : -len(".db")])] = figure(
            text, "reactions_votes_total", outcome="counted"
        )
    return counts


def test_the_votes_of_every_worker_add_up(tmp_path, redis_server):
    server = ServerProcesses(tmp_path, redis_server.url, REACTIONS_METRICS_TOKEN=TOKEN).start()
    sent = 0

    def vote_a_round() -> bool:
        nonlocal sent
        readers = [f"reader-{next(numbers):06d}-workers-aaaa" for _ in range(16)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda r: server.vote(r, "happy", "workers"), readers))
        sent += sum(answer["counted"] for answer in answers)
        serving = [count for count in counted_by_worker(tmp_path / "metrics").values() if count]
        return len(serving) >= 2

    try:
        wait_until(vote_a_round, timeout=60, interval=0)
        text = served(server)
    finally:
        server.stop()
    assert sent > 0
    assert figure(text, "reactions_votes_total", outcome="counted") == sent
    assert (
        figure(text, "reactions_requests_total", endpoint="api.post_reaction", status="200") == sent
    )
    assert figure(text, "reactions_request_seconds_count", endpoint="api.post_reaction") == sent


def test_a_dead_workers_streams_leave_the_gauge_and_its_votes_stay(tmp_path, redis_server):
    server = ServerProcesses(tmp_path, redis_server.url, REACTIONS_METRICS_TOKEN=TOKEN).start()
    try:
        server.vote(f"reader-{next(numbers):06d}-gauge-aaaaa", "happy", "gauge")
        with server.stream("demo", "gauge") as events:
            next(events)  # the stream is open
            assert figure(served(server), "reactions_live_streams") == 1
            workers = gunicorn_pids("".join(server.output))[1:]
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: len(gunicorn_pids("".join(server.output))) >= 1 + 2 * 2)
            wait_until(server.ready)
            text = served(server)
        assert figure(text, "reactions_live_streams") == 0
        assert figure(text, "reactions_votes_total", outcome="counted") == 1
    finally:
        server.stop()


def test_serve_counts_the_embedded_redis_restarts_and_starts_afresh(tmp_path):
    server = Server(tmp_path, REACTIONS_METRICS_TOKEN=TOKEN).start()
    try:
        server.vote("reader-restarts-aaaaaaaaaa", "happy")
        assert figure(served(server), "reactions_embedded_redis_restarts_total") == 0
        killed = redis_pid(tmp_path)
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: not exists(killed))
        wait_until(
            lambda: figure(served(server), "reactions_embedded_redis_restarts_total") == 1,
            timeout=20,
        )
    finally:
        server.stop()

    again = Server(tmp_path, REACTIONS_METRICS_TOKEN=TOKEN).start()
    try:
        text = served(again)
    finally:
        again.stop()
    assert figure(text, "reactions_embedded_redis_restarts_total") == 0
    assert figure(text, "reactions_votes_total", outcome="counted") == 0


def test_serve_without_a_token_keeps_metrics_private(tmp_path, redis_server):
    server = ServerProcesses(tmp_path, redis_server.url).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            served(server)
    finally:
        server.stop()
    assert refused.value.code == 404


def test_a_server_without_a_data_directory_leaves_no_metrics_files_behind(tmp_path, redis_server):
    """With REDIS_URL and no data directory, the workers' metrics files go to a temporary
    directory: it goes when the server stops, so restarts do not pile them up."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    server = Server(tmp_path / "none", REDIS_URL=redis_server.url, TMPDIR=str(temporary))
    server.start()
    assert [p.name for p in temporary.iterdir()][0].startswith("reactions-metrics-")
    returncode, output = server.stop()
    assert returncode == 0, output
    assert list(temporary.iterdir()) == []
