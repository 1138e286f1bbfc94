"""Live updates survive the loss of any one Redis node: a worker whose pub/sub subscription
is lost ends its open streams (their browsers reconnect) and refuses new ones with a 503 (the
widget backs off and polls) until it is subscribed again, on a cluster on another node."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.cluster import LocalCluster
from tests.processes import ServerProcesses
from tests.servers import SECRET, LiveServer, request_json, wait_until
from tests.test_browser import wait_for_bar, wait_for_percents
from widget import create_app
from widget.live import IDLE_PING_SECONDS
from widget.store import SITES_KEY, Site, Store, connect, salt_key, utc_day

ARTICLE = "failover"
# A reader's browser retries a refused stream after 1 s, 2 s, …; these readers retry at once,
# so that what is measured is the server's recovery, not the widget's patience.
READER_RETRY_SECONDS = 0.05


class Reader:
    """A reader whose page shows the article's bar: its live stream, opened again whenever
    the server ends or refuses it. `total` is the newest total it was sent."""

    def __init__(self, server_url: str, site: str, article: str = ARTICLE):
        query = urllib.parse.urlencode({"site": site, "article": article})
        self.url = f"{server_url}/api/v1/stream?{query}"
        self.total: int | None = None
        self.ended = 0  # streams the server ended
        self.refused: list[tuple[int, dict, dict]] = []  # status, headers, body
        self.leaving = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self.leaving:
            try:
                with urllib.request.urlopen(self.url, timeout=30) as answer:
                    for raw in answer:
                        line = raw.decode().rstrip("\n")
                        if line.startswith("data: "):
                            self.total = json.loads(line[len("data: ") :])["total"]
                self.ended += 1
            except urllib.error.HTTPError as error:
                self.refused.append((error.code, dict(error.headers), json.loads(error.read())))
                time.sleep(READER_RETRY_SECONDS)
            except OSError:
                time.sleep(READER_RETRY_SECONDS)  # the server is stopping


def pattern_subscribers(cluster: LocalCluster, ports: list[int]) -> dict[int, int]:
    """Clients with a pattern subscription, by node (PUBSUB NUMPAT counts the patterns)."""
    return {
        port: sum(client["psub"] != "0" for client in cluster.node(port).client_list("pubsub"))
        for port in ports
    }


def cast(server, site: str, reader: int) -> tuple[int, dict]:
    """(status, answer) of a reader's vote for the article, from the server's own page."""
    body = {
        "site": site,
        "article": ARTICLE,
        "reader": f"reader-{reader:02d}-aaaaaaaaaaaa",
        "reaction": "happy",
    }
    status, _, answer, _ = request_json(f"{server.url}/api/v1/reactions", body, server.url)
    return status, answer


def vote(server, site: str, reader: int) -> int:
    """The total after a reader's vote, which must be taken."""
    status, answer = cast(server, site, reader)
    assert status == 200, answer
    return answer["total"]


def vote_taken(server, site: str, reader: int) -> bool:
    """A vote that Redis may refuse while it fails over: a 503, and the voter tries again."""
    status, answer = cast(server, site, reader)
    assert status in (200, 503), answer
    return status == 200


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("live-failover"), replicas=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def outage(cluster):
    """Nodes a test kills or stops (`outage.append((port, signal))`); brought back after it."""
    lost: list[tuple[int, signal.Signals]] = []
    yield lost
    for port, sent in lost:
        if sent == signal.SIGSTOP:
            cluster.processes[port].send_signal(signal.SIGCONT)
        else:
            cluster.restart(port)
    cluster.wait_healthy()


@contextlib.contextmanager
def subscribers_of_our_own(cluster: LocalCluster, ports: set[int]):
    """A pattern subscription on each of these nodes. A worker subscribes where there are
    fewest, so the servers' workers keep off them."""
    holders = []
    try:
        for port in ports:
            pubsub = cluster.node(port).pubsub()
            pubsub.psubscribe("elsewhere:*")
            holders.append(pubsub)
        wait_until(lambda: all(pattern_subscribers(cluster, list(ports)).values()))
        yield
    finally:
        for pubsub in holders:
            pubsub.close()


@pytest.mark.parametrize(
    ("failure", "deadline"),
    [
        # The socket closes: the listener is on another node at once.
        (signal.SIGKILL, 2.0),
        # A stalled node (SIGSTOP) closes nothing: the listener notices when it answers no
        # PING (asked after IDLE_PING_SECONDS of silence, given the Redis timeout, 0.5 s).
        (signal.SIGSTOP, IDLE_PING_SECONDS + 0.5 + 2.0),
    ],
    ids=["killed", "stalled"],
)
def test_streams_hear_votes_soon_after_the_subscribed_node_is_lost(
    cluster, outage, tmp_path, failure, deadline
):
    """Two workers on a 3+3 cluster, readers with live streams open. The node holding a
    worker's subscription is lost: a reader whose stream was on it is reconnected, a new
    reader's stream opens, and a vote for a site on a live shard reaches them all within
    `deadline` of the loss (on a cluster the vote's message reaches every node)."""
    store = Store(connect(cluster.url, 5.0))
    store.client.flushall()
    # Site records and today's salt are read by every request; losing their shard is
    # another story (the records kept in each process): the workers keep off their nodes.
    shared = {cluster.master_of(SITES_KEY), cluster.master_of(salt_key(utc_day(time.time())))}
    server = ServerProcesses(tmp_path, cluster.url, workers=2)
    readers: list[Reader] = []
    with subscribers_of_our_own(cluster, shared):
        server.start()
        try:
            # Each worker's subscription, and ours.
            total = 2 + len(shared)
            wait_until(lambda: sum(pattern_subscribers(cluster, cluster.ports).values()) == total)
            subscribed = [
                port
                for port, n in pattern_subscribers(cluster, cluster.ports).items()
                if n and port not in shared
            ]
            assert subscribed, "the workers subscribed on the nodes of the shared records only"
            masters = cluster.master_ports()
            lost = next((port for port in subscribed if port in masters), subscribed[0])
            site = next(
                name
                for name in (f"live{number}" for number in range(1000))
                if cluster.master_of(name) != lost
            )
            store.save_site(Site(site, (server.url,)))
            # The first vote loads the vote script, which redis-py's cluster client sends to
            # every master: with one of them dead, that would fail (the scripts' story).
            assert vote(server, site, 0) == 1
            readers = [Reader(server.url, site) for _ in range(6)]
            wait_until(lambda: all(reader.total == 1 for reader in readers))

            cluster.processes[lost].send_signal(failure)
            lost_at = time.monotonic()
            outage.append((lost, failure))
            assert vote(server, site, 1) == 2
            newcomers = [Reader(server.url, site) for _ in range(4)]
            readers += newcomers
            wait_until(
                lambda: all(reader.total == 2 for reader in readers),
                timeout=lost_at + deadline - time.monotonic(),
            )
            assert vote(server, site, 2) == 3
            wait_until(
                lambda: all(reader.total == 3 for reader in readers),
                timeout=lost_at + deadline - time.monotonic(),
            )
            print(
                f"\n{failure.name} of the node of a subscription: every stream heard a vote "
                f"{time.monotonic() - lost_at:.2f} s later; streams ended by the server: "
                f"{sum(reader.ended for reader in readers)}; refused: "
                f"{sum(len(reader.refused) for reader in readers)}"
            )
            # Every refusal was the documented one, which sends the widget to polling.
            for status, headers, body in (r for reader in readers for r in reader.refused):
                assert status == 503 and body["error"] == "live_unavailable", body
                assert int(headers["Retry-After"]) > 0
        finally:
            for reader in readers:
                reader.leaving = True
            server.stop()
            store.client.close()


def test_workers_subscribe_on_different_nodes(cluster, tmp_path):
    """Every vote's message reaches every node, and each node sends it to its own
    subscribers: the workers' subscriptions spread over the nodes, one a node while there are
    enough, instead of all on the master of one slot."""
    wait_until(lambda: sum(pattern_subscribers(cluster, cluster.ports).values()) == 0)
    apps = []
    try:
        for _ in range(len(cluster.ports)):
            app = create_app({"REDIS_URL": cluster.url, "REACTIONS_SECRET_KEY": SECRET})
            apps.append(app)
            app.extensions["reactions_live"].start()
            wait_until(app.extensions["reactions_live"].connected.is_set)
        assert sorted(pattern_subscribers(cluster, cluster.ports).values()) == [1] * len(
            cluster.ports
        )
    finally:
        for app in apps:
            app.extensions["reactions_live"].stop()


@pytest.fixture
def listener_gate(app, monkeypatch):
    """While `listener_gate` is clear, the app's listener cannot reach Redis: a new
    subscription waits for it (or for the end of the test)."""
    gate = threading.Event()
    gate.set()
    hub = app.extensions["reactions_live"]
    subscribe = hub.store.client.pubsub

    def gated_pubsub(**kwargs):
        gate.wait(timeout=30)
        return subscribe(**kwargs)

    monkeypatch.setattr(hub.store.client, "pubsub", gated_pubsub)
    yield gate
    gate.set()


def test_a_lost_subscription_ends_the_streams_and_refuses_new_ones_until_it_is_back(
    app, redis_client, listener_gate
):
    """On one Redis: the worker's subscription is killed and it cannot subscribe again. Open
    streams end (their browsers reconnect), a new stream gets a 503 that sends the widget to
    polling, and the counts it polls stay right; once the worker is subscribed again, streams
    deliver again."""
    hub = app.extensions["reactions_live"]
    with LiveServer(app) as server:
        hub.start()
        wait_until(hub.connected.is_set)
        reader = Reader(server.url, "demo")
        wait_until(lambda: reader.total == 0)

        listener_gate.clear()
        assert redis_client.client_kill_filter(_type="pubsub") >= 1
        wait_until(lambda: reader.ended == 1)
        wait_until(lambda: reader.refused)
        status, headers, body = reader.refused[0]
        assert status == 503 and body["error"] == "live_unavailable" and body["detail"]
        assert int(headers["Retry-After"]) > 0
        assert headers["Access-Control-Allow-Origin"] == "*"  # the widget may read it
        assert vote(server, "demo", 1) == 1
        status, _, polled, _ = request_json(
            f"{server.url}/api/v1/reactions?site=demo&article={ARTICLE}"
        )
        assert status == 200 and polled["total"] == 1
        assert reader.total == 0  # nothing was streamed meanwhile

        listener_gate.set()
        wait_until(lambda: reader.total == 1)  # its stream opened again, with the news
        assert vote(server, "demo", 2) == 2
        wait_until(lambda: reader.total == 2)  # and it delivers live again
        reader.leaving = True


def test_a_vote_made_while_the_subscription_was_lost_reaches_an_open_page(
    page, app, live_server, store, redis_client, listener_gate
):
    """A reader has the demo page open. The worker's subscription is lost, and another reader
    votes before the worker can subscribe again, so no message brings the vote: the page's
    stream ends, the widget opens it again a second later, and the bar shows the vote
    without a reload."""
    hub = app.extensions["reactions_live"]
    with page.expect_request("**/api/v1/stream?*") as opened:
        page.goto(f"{live_server.url}/demo")
    wait_for_bar(page)
    article = urllib.parse.parse_qs(urllib.parse.urlsplit(opened.value.url).query)["article"][0]
    wait_until(hub.connected.is_set)
    # The stream open on the server, not only asked for by the page: one that arrived after
    # the loss would wait for the new subscription and bring the vote without a reconnect.
    wait_until(lambda: hub.count == 1)

    listener_gate.clear()
    with page.expect_request("**/api/v1/stream?*"):  # the widget's stream again
        assert redis_client.client_kill_filter(_type="pubsub") >= 1
        wait_until(lambda: not hub.connected.is_set())
        demo = store.get_site("demo")
        store.set_reaction(demo, article, store.reader_hash("demo", "another-reader-token"), "sad")
        listener_gate.set()
    wait_for_percents(page, ["0%", "100%", "0%", "0%", "0%", "0%"])
    assert not page.errors
