"""Each rule at its exact edge, so that loosening it fails a test: origins that only look
like an allowed one, limits of exactly their configured size, a Redis that stalls instead of
refusing, and cached counts after the live subscription was lost."""

import os
import signal
import threading
import time

import pytest

from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, wait_until
from widget import create_app
from widget.embedded_redis import EmbeddedRedis
from widget.store import SELF_ORIGIN, Site

BLOG = "https://blog.example.com"
OWN_ORIGIN = "http://localhost"  # the test client's host: the server's own origin
# The documented default of REACTIONS_REDIS_TIMEOUT, which the stalled-Redis test runs with.
DEFAULT_REDIS_TIMEOUT = 0.5


def make_app(redis_url, **settings):
    config = {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS | settings
    app = create_app(config)
    store = app.extensions["reactions"]
    store.save_site(Site("blog", (BLOG,)))
    store.save_site(Site("home", (SELF_ORIGIN, BLOG)))
    return app


@pytest.fixture
def app(redis_server, redis_client):
    app = make_app(redis_server.url)
    yield app
    app.extensions["reactions_live"].stop()


def vote(client, site="blog", origin=BLOG, reader="reader-exact-aaaaaaaa", **body):
    body = {"site": site, "article": "post", "reader": reader, "reaction": "happy"} | body
    headers = {"User-Agent": BROWSER_UA}
    if origin is not None:
        headers["Origin"] = origin
    return client.post("/api/v1/reactions", json=body, headers=headers)


def site_keys(redis_client, site):
    return sorted(redis_client.scan_iter(f"rx:{{{site}}}*"))


# Origins --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://blog.example.com.evil.example",  # the allowed origin as a prefix
        "https://blog.example.com:8443",  # another port
        "https://blog.example.com.",  # a trailing dot
        "https://blog.example.co",  # the allowed origin cut short
        "https://evilblog.example.com",  # the allowed origin as a suffix
        "https://www.blog.example.com",  # a subdomain
        "http://blog.example.com",  # another scheme
        "https://blog.example",
        "blog.example.com",
        "https://blog.example.com/",  # not what a browser sends
        OWN_ORIGIN,  # the server's own origin, for a site that does not list `self`
    ],
)
def test_an_origin_that_only_looks_like_the_allowed_one_is_refused(client, redis_client, origin):
    response = vote(client, origin=origin)
    assert response.status_code == 403
    assert response.get_json()["error"] == "origin_not_allowed"
    assert site_keys(redis_client, "blog") == []


@pytest.mark.parametrize(
    ("site", "origin"),
    [("blog", BLOG), ("home", BLOG), ("home", OWN_ORIGIN), ("demo", OWN_ORIGIN)],
)
def test_an_allowed_origin_and_the_own_origin_of_a_self_site_are_counted(
    client, redis_client, site, origin
):
    response = vote(client, site=site, origin=origin)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert redis_client.hgetall(f"rx:{{{site}}}:a:post") == {"happy": "1"}


def test_the_own_origin_is_the_host_the_request_reached(client, redis_client):
    """`self` means this server's origin as the request names it, not any local page."""
    response = vote(client, site="home", origin="http://localhost:8080")
    assert response.status_code == 403
    assert response.get_json()["error"] == "origin_not_allowed"
    assert site_keys(redis_client, "home") == []


# Limits at exactly their size ------------------------------------------------------------------


@pytest.fixture
def steady_clock(monkeypatch):
    """The limits count in fixed windows of the clock: here it stands still in the middle of
    the current hour, so every request of a test falls into one window."""
    now = time.time()
    pinned = now - now % 3600 + 1800.5
    monkeypatch.setattr(time, "time", lambda: pinned)
    return pinned


WHICH_LIMIT = {"client": "this browser", "site": "this site", "articles": "new articles"}
WINDOW_SECONDS = {"client": 60, "site": 1, "articles": 3600}


@pytest.mark.parametrize(
    ("setting", "vary_client", "vary_article", "scope"),
    [
        ("REACTIONS_RATE_PER_MINUTE", False, False, "client"),
        ("REACTIONS_SITE_RATE_PER_SECOND", True, False, "site"),
        ("REACTIONS_NEW_ARTICLES_PER_HOUR", True, True, "articles"),
    ],
)
@pytest.mark.parametrize("limit", [1, 4])
def test_a_limit_allows_exactly_its_size(
    redis_server, redis_client, steady_clock, setting, vary_client, vary_article, scope, limit
):
    """N votes pass and vote N+1 is refused, whatever the other limits. The site's window is
    one second of Redis's own clock (the key's expiry): a run slower than that says so and
    is tried again, instead of passing or failing by chance."""
    app = make_app(redis_server.url, **{setting: limit})
    client = app.test_client()
    app.extensions["reactions_live"].stop()  # reads nothing: no listener needed

    def one_round():
        redis_client.flushall()
        app.extensions["reactions"].save_site(Site("blog", (BLOG,)))
        started = time.monotonic()
        answers = []
        for number in range(limit + 1):
            agent = f"{BROWSER_UA} n{number}" if vary_client else BROWSER_UA
            article = f"post-{number}" if vary_article else "post"
            body = {"site": "blog", "article": article, "reaction": "happy"}
            body["reader"] = f"reader-{number:03d}-aaaaaaaaaa"
            answers.append(
                client.post(
                    "/api/v1/reactions",
                    json=body,
                    headers={"Origin": BLOG, "User-Agent": agent},
                )
            )
        return answers, time.monotonic() - started

    for _ in range(5):
        answers, took = one_round()
        if took < 0.8:
            break
    else:
        pytest.fail("five rounds of votes each took longer than the site's one-second window")
    assert [a.status_code for a in answers] == [200] * limit + [429]
    refused = answers[-1].get_json()
    assert refused["error"] == "rate_limited"
    assert WHICH_LIMIT[scope] in refused["detail"]
    counts = [redis_client.hvals(key) for key in site_keys(redis_client, "blog") if ":a:" in key]
    assert sum(int(count) for values in counts for count in values) == limit
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= WINDOW_SECONDS[scope]


# A stalled Redis -------------------------------------------------------------------------------


@pytest.fixture
def stalled_redis(tmp_path):
    """A Redis that stops answering without closing anything (SIGSTOP): the outage a dead
    host or a full network gives, where nothing refuses a connection."""
    server = EmbeddedRedis(str(tmp_path / "stalled")).start()

    class Stall:
        url = server.url

        def __enter__(self):
            os.kill(server.process.pid, signal.SIGSTOP)

        def __exit__(self, *exc):
            os.kill(server.process.pid, signal.SIGCONT)

    try:
        yield Stall()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/reactions"),
        ("get", "/api/v1/reactions?site=demo&article=never-read"),
        ("get", "/readyz"),
    ],
)
def test_a_stalled_redis_is_a_503_within_about_the_default_timeout(stalled_redis, method, path):
    """The app runs with its defaults (REACTIONS_REDIS_TIMEOUT 0.5 s): a request that needs
    Redis answers 503 within three times that, however long Redis stays stalled."""
    app = create_app({"REDIS_URL": stalled_redis.url, "REACTIONS_SECRET_KEY": SECRET})
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
    body = {"site": "demo", "article": "a", "reader": "reader-stall-aaaaaaaa", "reaction": "happy"}
    kwargs = {"json": body, "headers": {"Origin": OWN_ORIGIN}} if method == "post" else {}
    assert client.get("/readyz").status_code == 200  # connected while Redis answered
    answer = {}

    def request():
        started = time.monotonic()
        answer["response"] = getattr(client, method)(path, **kwargs)
        answer["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=request)
    try:
        with stalled_redis:
            reader.start()
            reader.join(timeout=3 * DEFAULT_REDIS_TIMEOUT)
            answered_in_time = not reader.is_alive()
        reader.join(timeout=60)  # Redis goes on: a hung request ends now
        assert answered_in_time, f"no answer within {3 * DEFAULT_REDIS_TIMEOUT} s"
        assert answer["response"].status_code == 503
        assert answer["response"].get_json()["error"] == "store_unavailable"
        assert int(answer["response"].headers["Retry-After"]) > 0
        print(f"\n{method.upper()} {path}: 503 after {answer['seconds'] * 1000:.0f} ms")
        # Redis is back: the same app answers again by itself.
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=10)
    finally:
        app.extensions["reactions_live"].stop()


# Cached counts across a lost subscription ------------------------------------------------------


def test_a_vote_made_while_the_subscription_was_down_is_seen_after_it_is_back(
    app, redis_server, redis_client, monkeypatch
):
    """Counts reads come from memory while the pub/sub subscription keeps it current. While
    the subscription is down, votes are published to nobody: once it is back, the counts
    read must include them, not what memory held before."""
    hub = app.extensions["reactions_live"]
    client = app.test_client()
    path = "/api/v1/reactions?site=blog&article=post"
    hub.counts_many("blog", [])  # starts the listener
    wait_until(hub.connected.is_set)
    assert client.get(path).get_json()["total"] == 0  # held in memory from now on

    # Redis takes the listener's next connection only when the test says so.
    reconnect = threading.Event()
    subscribe = hub.store.client.pubsub

    def gated_pubsub(**kwargs):
        reconnect.wait(timeout=30)
        return subscribe(**kwargs)

    monkeypatch.setattr(hub.store.client, "pubsub", gated_pubsub)
    try:
        killed = redis_client.client_kill_filter(_type="pubsub")
        assert killed >= 1
        wait_until(lambda: not hub.connected.is_set())

        other = make_app(redis_server.url)
        voted = vote(other.test_client())
        other.extensions["reactions_live"].stop()
        assert voted.status_code == 200 and voted.get_json()["total"] == 1
    finally:
        reconnect.set()
    wait_until(hub.connected.is_set)
    assert client.get(path).get_json()["total"] == 1
