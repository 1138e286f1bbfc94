"""Production scale-out: two app servers on a Redis Cluster of 3 masters and 3 replicas, and one
app server on a Sentinel-managed Redis, whose masters die (SIGKILL) under a steady vote load.

What an operator is promised: no acknowledged vote is lost; a dead shard stops only the sites
whose keys live on it, and only until its replica takes over; open streams deliver again soon
after the takeover, on every app server.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time

import pytest

from tests.cluster import LocalCluster, LocalSentinel
from tests.processes import (
    AdminSession,
    ServerProcesses,
    StreamWatch,
    VoteLoad,
    error_seconds,
    pattern_subscription_masters,
    recovered_at,
    send_vote,
)
from tests.servers import SECRET, request_json, wait_until
from widget import create_app
from widget.store import Site, counts_key

NODE_TIMEOUT = 2000  # ms: cluster-node-timeout, and Sentinel's down-after-milliseconds
# A shard's sites are back at most this long after their master died: Redis takes the node
# timeout to promote the replica, the app servers up to 3 s more to find it.
RECOVERY_SECONDS = NODE_TIMEOUT / 1000 + 3
# Streams deliver a new vote at most this long after the promotion.
STREAM_SECONDS = 2.0
# Sites on the live shards may see failures for about a second in all, when their app
# processes learn the new slot map; half a second more for a machine shared by two cores.
OTHER_SHARDS_ERROR_SECONDS = 1.5
# Seconds: the failover-timeout of the local Sentinel setup (tests/cluster.py).
SENTINEL_FAILOVER_TIMEOUT = 3
STREAMS_PER_SERVER = 4  # each server has two workers: a stream on each, most likely
PASSWORD = "failover admin password"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(
        tmp_path_factory.mktemp("failover-cluster"),
        masters=3,
        replicas=1,
        node_timeout=NODE_TIMEOUT,
    ).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def store(cluster):
    """The store as the operator's tools see it: for saving sites and reading what counted."""
    app = create_app({"REDIS_URL": cluster.url, "REACTIONS_SECRET_KEY": SECRET})
    yield app.extensions["reactions"]
    app.extensions["reactions_live"].stop()


@pytest.fixture(scope="module")
def sites(cluster):
    """One site per master, by name."""
    return sorted(cluster.site_per_master().values())


@pytest.fixture(scope="module")
def servers(cluster, store, sites, tmp_path_factory):
    """Two app servers of two workers each, seeded with every node of the cluster; each site
    takes votes from pages on both."""
    data = tmp_path_factory.mktemp("failover-servers")
    servers = [
        ServerProcesses(
            data / name,
            cluster.seeds_url,
            workers=2,
            REACTIONS_ADMIN_PASSWORD=PASSWORD,
            REACTIONS_LOGIN_DELAY="0",
        )
        for name in ("one", "two")
    ]
    for name in sites:
        store.save_site(Site(name, tuple(server.url for server in servers)))
    started = []
    try:
        for server in servers:
            started.append(server.start())
        yield servers
    finally:
        for server in started:
            code, output = server.stop()
            assert code == 0, output


def server_logs(servers) -> str:
    """The end of each server's output, for an assertion's message."""
    return "\n".join(f"--- {s.url}\n" + "".join(s.output[-15:]) for s in servers)


def counted(store, site: str, article: str) -> int:
    return sum(store.counts(site, article).values())


def test_sites_spread_over_every_master(cluster, servers, sites):
    assert {cluster.master_of(name) for name in sites} == set(cluster.master_ports())
    for name in sites:
        assert send_vote(servers[0].url, name, "spread", f"spread-{name}-reader-token").acknowledged
        # The site's keys sit on the master of its hash tag.
        master = cluster.node(cluster.master_of(name))
        assert master.hgetall(counts_key(name, "spread")) == {"happy": "1"}


def test_a_vote_on_one_server_reaches_streams_on_the_other(servers, sites):
    first, second = servers
    for name in sites:
        with StreamWatch(second.url, name, "across") as stream:
            before = wait_until(lambda stream=stream: stream.events, timeout=10)[-1][1]
            voted = send_vote(first.url, name, "across", f"across-{name}-reader-token")
            assert voted.acknowledged
            wait_until(lambda s=stream, v=voted: s.delivered_after(v.sent), timeout=5)
            assert stream.newest() == before + 1


def test_the_admin_pages_agree_with_the_votes(servers, sites):
    votes = {name: number + 2 for number, name in enumerate(sites)}
    for name, wanted in votes.items():
        for number in range(wanted):
            server = servers[number % 2]
            assert send_vote(
                server.url, name, "admin", f"admin-{name}-{number}-reader-token"
            ).acknowledged
    admin = AdminSession(servers[1].url, PASSWORD)
    for name, wanted in votes.items():
        page = admin.get(f"/admin/sites/{name}")
        summary = re.search(r"(\d+) reactions on (\d+) articles", page)
        assert summary, page
        rows = list(csv.DictReader(io.StringIO(admin.get(f"/admin/sites/{name}/export.csv"))))
        by_article = {row["article"]: int(row["total"]) for row in rows}
        assert by_article["admin"] == wanted
        assert int(summary.group(1)) == sum(by_article.values())


def killed_master(cluster, victim: str) -> int:
    """The master holding the site records, or the one holding the app workers' pattern
    subscription; if no master holds that, live updates need no failover, and a master other
    than the site records' is killed."""
    records = cluster.master_of("rx:sites")
    if victim == "site records":
        return records
    holders = pattern_subscription_masters(cluster)
    return holders[0] if holders else next(p for p in cluster.master_ports() if p != records)


def late_streams(streams, promoted: float) -> dict[int, float | str]:
    """The streams that brought no new vote within STREAM_SECONDS of the promotion: when they
    did (seconds after it), or "never" (while the test watched)."""
    late = {}
    for number, stream in enumerate(streams):
        at = stream.delivered_after(promoted)
        if at is None or at - promoted > STREAM_SECONDS:
            late[number] = "never" if at is None else round(at - promoted, 1)
    return late


@pytest.mark.parametrize(
    "victim, votes_on_its_shard",
    [("site records", True), ("subscription", True), ("subscription", False)],
    ids=["site records", "subscription", "subscription, its shard idle"],
)
def test_a_master_dies_under_load(cluster, servers, sites, store, victim, votes_on_its_shard):
    """With its shard idle, nothing but the subscription itself tells an app process that
    the subscription's master died."""
    for number, server in enumerate(servers):  # both servers answer, their workers listen
        for name in sites:
            reader = f"warm-up-{number}-{name}-{time.monotonic_ns()}"
            wait_until(
                lambda u=server.url, n=name, r=reader: send_vote(u, n, "warm-up", r).acknowledged
            )
    dead = killed_master(cluster, victim)
    (replica,) = next(replicas for _, _, m, replicas in cluster.slots() if m == dead)
    dead_sites = [name for name in sites if cluster.master_of(name) == dead]
    live_sites = [name for name in sites if name not in dead_sites]
    article = f"failover-{victim.replace(' ', '-')}-{votes_on_its_shard}"
    targets = [(name, article) for name in (sites if votes_on_its_shard else live_sites)]
    watched = [dead_sites, live_sites] if votes_on_its_shard else [live_sites]
    with contextlib.ExitStack() as running:
        load = running.enter_context(VoteLoad([s.url for s in servers], targets))
        streams = [
            running.enter_context(StreamWatch(server.url, live_sites[0], article))
            for server in servers
            for _ in range(STREAMS_PER_SERVER)
        ]
        wait_until(
            lambda: (
                all(load.acknowledged()[t] >= 3 for t in targets) and all(s.events for s in streams)
            ),
            timeout=20,
        )

        killed = time.monotonic()
        cluster.kill(dead)
        try:
            # A load balancer keeps every app server: the cluster answers, one shard is down.
            assert [request_json(f"{s.url}/readyz", timeout=5)[0] for s in servers] == [200, 200]
            wait_until(
                lambda: cluster.node(replica).info("replication")["role"] == "master",
                timeout=NODE_TIMEOUT / 1000 + 15,
                interval=0.05,
            )
            promoted = time.monotonic()
            # The load goes on past both deadlines, so that a failure after them shows.
            until = max(killed + RECOVERY_SECONDS, promoted + STREAM_SECONDS) + 0.5
            wait_until(
                lambda: all(
                    len([v for v in load.of(group) if v.sent > until]) >= 10 for group in watched
                ),
                timeout=60,
            )
        finally:
            running.close()  # the load and the streams end
            cluster.restart(dead)

    logs = server_logs(servers)
    acknowledged, sent = load.acknowledged(), load.sent()
    totals = {target: counted(store, *target) for target in targets}
    lost = {t: (acknowledged[t], totals[t]) for t in targets if totals[t] < acknowledged[t]}
    assert not lost, f"(acknowledged, counted): {lost}"
    assert all(totals[t] <= sent[t] for t in targets), (totals, sent)

    others = error_seconds(load.of(live_sites))
    assert others <= OTHER_SHARDS_ERROR_SECONDS, f"{others:.1f} s of errors\n{logs}"

    if votes_on_its_shard:
        back = recovered_at(load.of(dead_sites), killed)
        assert back is not None and back - killed <= RECOVERY_SECONDS, (
            f"back {None if back is None else round(back - killed, 1)} s after the kill\n{logs}"
        )
    late = late_streams(streams, promoted)
    assert not late, f"streams late after the promotion (s): {late}\n{logs}"


@pytest.fixture
def sentinel(tmp_path):
    sentinel = LocalSentinel(
        tmp_path / "sentinel", replicas=1, sentinels=3, down_after=NODE_TIMEOUT
    ).start()
    yield sentinel
    sentinel.stop()


@pytest.fixture
def sentinel_server(sentinel, tmp_path):
    server = ServerProcesses(tmp_path / "app", sentinel.url, workers=2).start()
    yield server
    code, output = server.stop()
    assert code == 0, output


def sentinels_name(sentinel, port: int) -> bool:
    """Every sentinel names the Redis at `port` as the master."""
    return all(
        int(sentinel.node(p).sentinel_get_master_addr_by_name(sentinel.name)[1]) == port
        for p in sentinel.sentinel_ports
    )


def test_the_sentinel_master_dies_under_load(sentinel, sentinel_server):
    target = ("demo", "sentinel")
    dead = sentinel.master()
    (replica,) = (port for port in sentinel.redis_ports if port != dead)
    with contextlib.ExitStack() as running:
        load = running.enter_context(VoteLoad([sentinel_server.url], [target]))
        streams = [
            running.enter_context(StreamWatch(sentinel_server.url, *target))
            for _ in range(STREAMS_PER_SERVER)
        ]
        wait_until(
            lambda: load.acknowledged()[target] >= 3 and all(s.events for s in streams),
            timeout=20,
        )

        killed = time.monotonic()
        sentinel.kill(dead)
        try:
            wait_until(
                lambda: sentinel.node(replica).info("replication")["role"] == "master",
                timeout=NODE_TIMEOUT / 1000 + 2 * SENTINEL_FAILOVER_TIMEOUT + 5,
                interval=0.05,
            )
            promoted = time.monotonic()
            # Sentinel's election may need a second round, a failover timeout later (the
            # sentinels split their votes): then the app has as long after the promotion
            # as after a first round's.
            recovery = max(killed + RECOVERY_SECONDS, promoted + 2.0)
            until = max(recovery, promoted + STREAM_SECONDS) + 0.5
            wait_until(lambda: len([v for v in load.votes if v.sent > until]) >= 10, 60)
        finally:
            running.close()
            # Brought back as a replica of the master every sentinel names, not of one a
            # sentinel that has not heard of the failover yet would name.
            wait_until(
                lambda: sentinels_name(sentinel, replica),
                timeout=2 * SENTINEL_FAILOVER_TIMEOUT + 10,
            )
            sentinel.restart(dead)

    logs = server_logs([sentinel_server])
    master = sentinel.node(sentinel.master())
    total = sum(int(count) for count in master.hgetall(counts_key(*target)).values())
    assert load.acknowledged()[target] <= total <= load.sent()[target]

    back = recovered_at(load.votes, killed)
    assert back is not None and back <= recovery, (
        f"promoted {promoted - killed:.1f} s after the kill, votes back "
        f"{'never' if back is None else round(back - killed, 1)} s after it\n{logs}"
    )
    late = late_streams(streams, promoted)
    assert not late, f"streams late after the promotion (s): {late}\n{logs}"
