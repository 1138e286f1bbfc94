"""One shard of a Redis Cluster stalled or down: the sites whose keys live on the other shards
keep counting, because what every request needs (the site records, the server secret, the
day's salt) is held by each server process and refreshed in the background."""

import contextlib
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.cluster import LocalCluster
from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, Server, request_json, wait_until
from widget import create_app
from widget.store import SITE_CACHE_SECONDS, SITES_KEY, Site, Store, connect, salt_key, utc_day
from widget.store import held as store_module
from widget.store.days import day_start

# The apps' Redis timeout here: a request that waited on a stalled shard would fail after it.
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("shards")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def placement(cluster):
    """A site name on every master: {master port: site}."""
    return cluster.site_per_master()


@pytest.fixture
def sites(cluster, placement):
    """Those sites saved by the admin (again: a killed master comes back empty)."""
    client = connect(cluster.url, 5.0)
    admin = Store(client)
    for name in placement.values():
        admin.save_site(Site(name, (origin(name),)))
    client.close()
    return placement


def make_app(cluster):
    return create_app(
        {
            "REDIS_URL": cluster.url,
            "REACTIONS_SECRET_KEY": SECRET,
            "REACTIONS_REDIS_TIMEOUT": TIMEOUT,
        }
        | NO_LIMITS
    )


@pytest.fixture
def app(cluster):
    app = make_app(cluster)
    yield app
    app.extensions["reactions_live"].stop()


@pytest.fixture
def client(app):
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
    return client


def origin(site: str) -> str:
    return f"https://{site}.example"


def reader(number: int) -> str:
    return f"reader-{number:06d}-aaaaaaaaaa"


def vote(client, site: str, number: int, article: str = "post"):
    body = {"site": site, "article": article, "reader": reader(number), "reaction": "happy"}
    return client.post("/api/v1/reactions", json=body, headers={"Origin": origin(site)})


def counts(client, site: str, article: str = "post"):
    return client.get(f"/api/v1/reactions?site={site}&article={article}")


def timed(request, *args) -> tuple[int, float]:
    """(status, seconds) of a request of the test client."""
    started = time.monotonic()
    status = request(*args).status_code
    return status, time.monotonic() - started


def answers(port: int) -> bool:
    """Whether the node answers a PING at once (no retry: redis-py's default retries)."""
    node = redis.Redis(port=port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    try:
        return bool(node.ping())
    except redis.RedisError:
        return False
    finally:
        node.close()


@contextlib.contextmanager
def stalled(port: int, seconds: int):
    """The node busy for `seconds` (DEBUG SLEEP, from a thread: the call blocks); yields
    the thread, alive while the node sleeps."""
    sleeper = redis.Redis(port=port, socket_timeout=seconds + 30)
    thread = threading.Thread(target=sleeper.execute_command, args=("DEBUG", "SLEEP", seconds))
    thread.start()
    try:
        wait_until(lambda: not answers(port))
        yield thread
    finally:
        thread.join()
        sleeper.close()


@contextlib.contextmanager
def killed(cluster, port: int):
    """The master SIGKILLed, and brought back (empty: no persistence here) afterwards."""
    cluster.kill(port)
    try:
        yield
    finally:
        cluster.restart(port)


def test_a_stalled_shard_of_site_records_does_not_stall_the_other_sites(
    cluster, sites, client, monkeypatch
):
    # Every record the process holds is due for a refresh at every request: the stall can
    # begin at the worst moment for each of them.
    monkeypatch.setattr(store_module, "SITE_CACHE_SECONDS", 0.0)
    stalled_port = cluster.master_of(SITES_KEY)
    elsewhere = [name for port, name in sites.items() if port != stalled_port]
    for name in elsewhere:
        assert vote(client, name, 0).status_code == 200  # the process knows these sites
    seen = []
    with stalled(stalled_port, 3) as sleeping:
        number = 1
        while sleeping.is_alive():
            for name in elsewhere:
                seen += [timed(vote, client, name, number), timed(counts, client, name)]
            number += 1
    assert len(seen) >= 4 * len(elsewhere)
    assert {status for status, _ in seen} == {200}
    # None waited on the stalled shard for as long as the Redis timeout.
    assert max(seconds for _, seconds in seen) < TIMEOUT


def test_a_killed_master_of_site_records_leaves_the_other_sites_answering(cluster, sites, tmp_path):
    """Against a real server (gunicorn, a gevent worker) that reads the server secret from
    Redis: for longer than a record is served without a refresh, nothing on the request
    path of the other sites asks the dead master."""
    server = Server(
        tmp_path, REDIS_URL=cluster.url, **{name: str(value) for name, value in NO_LIMITS.items()}
    ).start()
    try:
        dead = cluster.master_of(SITES_KEY)
        elsewhere = [name for port, name in sites.items() if port != dead]

        def ask(name: str, number: int) -> list[int]:
            body = {"site": name, "article": "post", "reader": reader(number), "reaction": "sad"}
            voted = request_json(f"{server.url}/api/v1/reactions", body, origin(name), 10)
            read = request_json(f"{server.url}/api/v1/reactions?site={name}&article=post")
            return [voted[0], read[0]]

        for name in elsewhere:
            assert ask(name, 0) == [200, 200]
        statuses = []
        with killed(cluster, dead):
            until = time.monotonic() + SITE_CACHE_SECONDS + 1
            number = 1
            while time.monotonic() < until:
                for name in elsewhere:
                    statuses += ask(name, number)
                number += 1
        assert len(statuses) >= 4 * len(elsewhere)
        assert set(statuses) == {200}
    finally:
        server.stop()


def test_the_day_changes_while_the_new_days_salt_is_on_a_dead_master(
    cluster, sites, app, client, monkeypatch
):
    real_time = time.time
    clock = [real_time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    tomorrow = utc_day(clock[0] + 86400)
    salt_port = cluster.master_of(salt_key(tomorrow))
    name = next(name for port, name in sites.items() if port != salt_port)
    assert vote(client, name, 1, "midnight").get_json()["total"] == 1
    # Today's first vote had the process create and read tomorrow's salt, in the background.
    wait_until(lambda: cluster.node(salt_port).exists(salt_key(tomorrow)))
    expires = cluster.node(salt_port).ttl(salt_key(tomorrow)) + real_time()
    with killed(cluster, salt_port):
        clock[0] += 86400  # this time tomorrow
        totals = [vote(client, name, n, "midnight").get_json()["total"] for n in (2, 3, 4)]
    assert totals == [2, 3, 4]
    # Tomorrow's salt lives until 48 h after tomorrow begins (give or take a second of the
    # clock), not longer: then its hashes cannot be linked.
    assert abs(expires - (day_start(tomorrow) + 48 * 3600)) < 3


def test_a_site_saved_by_the_admin_reaches_a_process_holding_the_old_record(cluster, sites, app):
    name = sites[cluster.master_of(SITES_KEY)]
    other = make_app(cluster)
    hub, elsewhere = other.extensions["reactions_live"], other.extensions["reactions"]
    hub.start()
    try:
        wait_until(hub.connected.is_set)
        assert elsewhere.get_site(name).origins == (origin(name),)
        moved = Site(name, ("https://moved.example",))
        app.extensions["reactions"].save_site(moved)
        wait_until(lambda: elsewhere.get_site(name).origins == moved.origins, timeout=1)
    finally:
        hub.stop()


def test_a_change_announced_while_the_records_master_is_dead_keeps_the_held_record(
    cluster, sites, app, client
):
    dead = cluster.master_of(SITES_KEY)
    name = next(name for port, name in sites.items() if port != dead)
    store = app.extensions["reactions"]
    assert vote(client, name, 1, "announced").status_code == 200
    held = store.get_site(name)
    with killed(cluster, dead):
        store.forget_sites(name)  # as the live listener does when a change is announced
        store.forget_sites()  # and when it subscribes again
        assert store.get_site(name) == held
        assert vote(client, name, 2, "announced").status_code == 200
        assert counts(client, name, "announced").get_json()["total"] == 2


def test_a_process_that_served_one_site_knows_every_site(cluster, sites, app, client):
    dead = cluster.master_of(SITES_KEY)
    first, *others = [name for port, name in sites.items() if port != dead]
    assert vote(client, first, 1, "preloaded").status_code == 200
    with killed(cluster, dead):
        # Never asked for before, yet known: the first lookup read every record.
        for name in others:
            assert vote(client, name, 1, "preloaded").status_code == 200
        # An unknown site needs the records' master: a clear 503, not a wrong 403.
        refused = vote(client, "nosuchsite", 1, "preloaded")
        assert (refused.status_code, refused.get_json()["error"]) == (503, "store_unavailable")


def test_a_master_that_lost_its_scripts_counts_while_another_master_is_down(
    cluster, sites, app, client
):
    forgetful, dead = cluster.master_ports()[:2]
    name = sites[forgetful]
    assert vote(client, name, 1, "scripts").status_code == 200
    cluster.node(forgetful).script_flush()  # as after its restart: EVALSHA answers NOSCRIPT
    with killed(cluster, dead):
        assert vote(client, name, 2, "scripts").get_json()["total"] == 2


def test_a_dead_records_master_is_asked_about_once_a_second_not_by_every_request(
    cluster, sites, app, client, monkeypatch
):
    monkeypatch.setattr(store_module, "SITE_CACHE_SECONDS", 0.0)  # every record due, always
    dead = cluster.master_of(SITES_KEY)
    name = next(name for port, name in sites.items() if port != dead)
    assert vote(client, name, 0, "asked").status_code == 200
    store = app.extensions["reactions"]
    reads = []
    for command in ("hget", "hmget", "hgetall"):  # the reads of the records, counted
        read = getattr(store.client, command)
        monkeypatch.setattr(
            store.client, command, lambda *args, read=read: reads.append(args) or read(*args)
        )
    with killed(cluster, dead):
        started = time.monotonic()
        statuses = {vote(client, name, number, "asked").status_code for number in range(1, 101)}
        elapsed = time.monotonic() - started
    assert statuses == {200}
    assert 1 <= len(reads) <= 2 + elapsed / store_module.RETRY_SECONDS


def test_a_record_changed_unannounced_is_read_again_in_the_background(
    cluster, sites, app, monkeypatch
):
    """A process whose subscription is down hears of no change: its records are refreshed
    once they are older than SITE_CACHE_SECONDS (here: at once)."""
    monkeypatch.setattr(store_module, "SITE_CACHE_SECONDS", 0.0)
    name = next(iter(sites.values()))
    store = app.extensions["reactions"]  # its live listener is not running
    assert store.get_site(name).origins == (origin(name),)
    client = connect(cluster.url, 5.0)
    Store(client).save_site(Site(name, ("https://renamed.example",)))
    client.close()
    wait_until(lambda: store.get_site(name).origins == ("https://renamed.example",))
