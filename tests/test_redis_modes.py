"""Redis Cluster and Sentinel as an operator runs them: one app server under hundreds of
concurrent connections waits for a free Redis connection instead of answering 503, and a
cluster is reached through any of several seed nodes."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.cluster import LocalCluster, LocalSentinel
from tests.processes import ServerProcesses
from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, free_port
from widget import create_app
from widget.store import MAX_CONNECTIONS, Store, connect
from widget.store.connection import (
    SENTINEL_CONNECTIONS,
    DeadlinePool,
    SentinelDeadlinePool,
    WaitingQueue,
    seed_nodes,
)

# Concurrent client connections against one app server (one gevent worker), each sending
# votes and counts GETs: far more calls at once than a pool holds connections to one node.
CONCURRENT = 400
ROUNDS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("modes-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    sentinel = LocalSentinel(tmp_path_factory.mktemp("modes-sentinel")).start()
    yield sentinel
    sentinel.stop()


def load(server: ServerProcesses, article: str) -> Counter:
    """CONCURRENT readers open a connection each and, all at once, vote and read the counts
    ROUNDS times (a new reader each vote): the statuses of every answer."""
    statuses: Counter = Counter()
    lock = threading.Lock()
    start = threading.Barrier(CONCURRENT)
    query = urllib.parse.urlencode({"site": "demo", "article": article})

    def reader(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        seen = []
        try:
            start.wait()
            for turn in range(ROUNDS):
                body = {
                    "site": "demo",
                    "article": article,
                    "reader": f"reader-{number:04d}-{turn}-under-load",
                    "reaction": "happy",
                }
                connection.request(
                    "POST",
                    "/api/v1/reactions",
                    body=json.dumps(body),
                    headers={
                        "Content-Type": "application/json",
                        "Origin": server.url,
                        "User-Agent": BROWSER_UA,
                    },
                )
                answer = connection.getresponse()
                answer.read()
                seen.append(answer.status)
                connection.request(
                    "GET", f"/api/v1/reactions?{query}", headers={"User-Agent": BROWSER_UA}
                )
                answer = connection.getresponse()
                answer.read()
                seen.append(answer.status)
        finally:
            connection.close()
            with lock:
                statuses.update(seen)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def worker_connections(server: ServerProcesses) -> Counter:
    """The open TCP connections of the server's one worker process, by the port they reach
    (Linux's /proc: serve starts gunicorn, whose child is the worker)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    (gunicorn,) = children[server.process.pid]
    (worker,) = children[gunicorn]
    sockets = set()
    for fd in Path(f"/proc/{worker}/fd").iterdir():
        with contextlib.suppress(OSError):
            sockets.add(os.readlink(fd))
    reached: Counter = Counter()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{worker}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            established = fields[3] == "01"
            if established and f"socket:[{fields[9]}]" in sockets:
                reached[int(fields[2].rpartition(":")[2], 16)] += 1
    return reached


def connection_limits(mode: str, setup) -> dict[int, int]:
    """How many connections one process may hold to each port of the setup: its pool, and on
    a cluster the live subscription's own connection to one node (on one Redis and under
    Sentinel that one is a connection of the pool)."""
    if mode == "cluster":
        return dict.fromkeys(setup.ports, MAX_CONNECTIONS + 1)
    return dict.fromkeys(setup.redis_ports, MAX_CONNECTIONS) | dict.fromkeys(
        setup.sentinel_ports, SENTINEL_CONNECTIONS
    )


@pytest.mark.parametrize("mode", ["cluster", "sentinel"])
def test_hundreds_of_concurrent_readers_wait_for_a_connection_instead_of_a_503(
    request, tmp_path, mode
):
    setup = request.getfixturevalue(mode)
    # A patient timeout: the machine's two cores are shared by this test's 400 clients and
    # the server; what is tested is that a full pool waits, not how long Redis takes.
    server = ServerProcesses(tmp_path, setup.url, workers=1, REACTIONS_REDIS_TIMEOUT="5")
    server.start()
    try:
        statuses = load(server, f"load-{mode}")
        assert statuses == Counter({200: 2 * CONCURRENT * ROUNDS})
        # Every vote counted, once (as stored: the server's live counts may lag a moment).
        store = Store(connect(setup.url, 5.0))
        assert sum(store.counts("demo", f"load-{mode}").values()) == CONCURRENT * ROUNDS
        # The worker held no more connections than the README says.
        limits = connection_limits(mode, setup)
        held = worker_connections(server)
        assert held and all(held[port] <= limits[port] for port in limits), held
        assert set(held) <= set(limits), held
    finally:
        code, output = server.stop()
    assert code == 0, output


@pytest.fixture
def cluster_password(cluster):
    """The module's cluster, asking for a password for the length of one test."""
    password = "p@ss:word"
    for port in cluster.ports:
        cluster.node(port).config_set("requirepass", password)
    yield password
    for port in cluster.ports:
        with redis.Redis(port=port, password=password, protocol=2) as node:
            node.config_set("requirepass", "")


@pytest.mark.parametrize("with_password", [False, True], ids=["seeds", "seeds-and-password"])
def test_a_server_starts_on_a_cluster_whose_first_seed_is_dead(
    request, tmp_path, cluster, with_password
):
    userinfo = ""
    if with_password:
        userinfo = ":" + urllib.parse.quote(request.getfixturevalue("cluster_password")) + "@"
    dead = f"127.0.0.1:{free_port()}"  # nobody listens there
    seeds = cluster.seeds_url.removeprefix("redis+cluster://")
    server = ServerProcesses(tmp_path, f"redis+cluster://{userinfo}{dead},{seeds}", workers=1)
    server.start()
    article = f"seeds-{with_password}"
    try:
        assert server.vote("reader-with-a-dead-seed", "happy", article)["total"] == 1
        assert server.vote("another-reader-dead-seed", "happy", article)["total"] == 2
    finally:
        code, output = server.stop()
    assert code == 0, output


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:seven", "'127.0.0.1:seven' is not a number"),
        ("redis+cluster://:secret@", "no node"),
        ("redis+cluster://127.0.0.1:7000,,127.0.0.1:7001", "an empty node"),
        ("rediss+cluster://:7000", "':7000' has no host"),
        ("redis+sentinel://sentinel:26379,sentinel:99999/reactions", "from 1 to 65535"),
    ],
)
def test_a_malformed_list_of_nodes_stops_serve_with_a_clear_message(tmp_path, url, message):
    environment = {**os.environ, "REDIS_URL": url, "REACTIONS_DATA_DIR": str(tmp_path)}
    finished = subprocess.run(
        [sys.executable, "-m", "widget.cli", "serve", "--port", str(free_port())],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode != 0
    assert "Error: REDIS_URL must name its nodes as host:port" in finished.stderr
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout


@pytest.mark.parametrize(
    "url, nodes",
    [
        ("redis+cluster://10.0.0.1:7000", [("10.0.0.1", 7000)]),
        (
            "rediss+cluster://user:pw@a.example:7000, b.example ,[::1]:7002",
            [("a.example", 7000), ("b.example", 6379), ("::1", 7002)],
        ),
        (
            "redis+sentinel://s1,s2:5000,[fe80::1]/reactions",
            [("s1", 26379), ("s2", 5000), ("fe80::1", 26379)],
        ),
    ],
)
def test_the_nodes_of_a_url(url, nodes):
    assert seed_nodes(url) == nodes


def test_every_node_of_a_cluster_client_has_a_pool_that_waits(cluster):
    client = connect(cluster.seeds_url, 0.25)
    pools = [node.redis_connection.connection_pool for node in client.get_nodes()]
    assert len(pools) == len(cluster.ports)
    for pool in pools:
        assert isinstance(pool, DeadlinePool) and pool.queue_class is WaitingQueue
        assert (pool.max_connections, pool.timeout) == (MAX_CONNECTIONS, 0.25)
    client.close()


def test_the_master_of_a_sentinel_group_has_a_pool_that_waits(sentinel):
    client = connect(sentinel.url, 0.25)
    pool = client.connection_pool
    assert isinstance(pool, SentinelDeadlinePool) and pool.queue_class is WaitingQueue
    assert (pool.max_connections, pool.timeout) == (MAX_CONNECTIONS, 0.25)
    assert client.ping() and pool.master_address == ("127.0.0.1", sentinel.master())
    # A new connection to the master asks a sentinel first: a few connections each, waited for.
    for asked in pool.sentinel_manager.sentinels:
        assert isinstance(asked.connection_pool, redis.BlockingConnectionPool)
        assert asked.connection_pool.max_connections == SENTINEL_CONNECTIONS
    client.close()


@pytest.mark.parametrize("mode", ["cluster", "sentinel"])
def test_a_pool_that_stays_full_says_so_instead_of_blaming_redis(request, mode):
    """When no connection comes free within the timeout, the call fails with
    MaxConnectionsError: redis-py's cluster client then leaves its map of the cluster alone
    (any other ConnectionError makes it take the node for dead)."""
    client = connect(request.getfixturevalue(mode).url, 0.05)
    if mode == "cluster":
        pool = client.get_node_from_key("rx:{demo}:full").redis_connection.connection_pool
    else:
        pool = client.connection_pool
    held = [pool.get_connection() for _ in range(MAX_CONNECTIONS)]
    try:
        with pytest.raises(redis.MaxConnectionsError, match="no free Redis connection"):
            client.get("rx:{demo}:full")
        pool.release(held.pop())
        assert client.get("rx:{demo}:full") is None
    finally:
        for connection in held:
            pool.release(connection)
        client.close()


def vote_on_the_demo_page(client, vote: dict):
    """A vote from the demo page of the test client's server."""
    return client.post("/api/v1/reactions", json=vote, headers={"Origin": "http://localhost"})


def test_a_cluster_with_no_node_left_answers_503_not_500(tmp_path):
    cluster = LocalCluster(tmp_path).start()
    app = create_app({"REDIS_URL": cluster.seeds_url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS)
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
    vote = {"site": "demo", "article": "gone", "reader": "reader-of-a-dead-cluster"}
    try:
        assert vote_on_the_demo_page(client, vote | {"reaction": "happy"}).status_code == 200
        for port in cluster.ports:
            cluster.kill(port)
        answers = [
            vote_on_the_demo_page(client, vote | {"reaction": "sad"}),
            client.get("/api/v1/reactions?site=demo&article=gone"),
            client.get("/api/v1/reactions/batch?site=demo&article=gone&article=other"),
        ]
        for answer in answers:
            assert answer.status_code == 503
            assert answer.get_json()["error"] == "store_unavailable"
    finally:
        app.extensions["reactions_live"].stop()
        cluster.stop()


def test_a_vote_under_sentinel_is_answered_once_a_replica_has_it(redis_server, redis_client):
    """Redis replicates asynchronously: a vote the master answered just before it died could
    be missing on the replica the sentinels promote. So under Sentinel a vote is answered
    after WAIT 1 on its own connection; with no replica answering (here: none), after the
    wait's bound, and it counts all the same."""
    redis_client.config_resetstat()
    store = Store(connect(redis_server.url, 5.0), SECRET, replica_acks=1, replica_wait_ms=50)
    site = store.get_site("demo")
    previous, counts = store.set_reaction(site, "acked", "reader-acked", "happy")
    assert previous is None and counts == {"happy": 1}
    # One WAIT with the script, a second if Redis had to be given the script first.
    assert redis_client.info("commandstats")["cmdstat_wait"]["calls"] >= 1
    sentinel_app = create_app(
        {"REDIS_URL": "redis+sentinel://127.0.0.1:1/reactions", "REACTIONS_SECRET_KEY": SECRET}
    )
    assert sentinel_app.extensions["reactions"].replica_acks == 1
    assert create_app({"REDIS_URL": redis_server.url}).extensions["reactions"].replica_acks == 0
