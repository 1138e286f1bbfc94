"""Hostile input and failures, against a real Redis (DESIGN.md, "Reader identity and abuse")."""

import http.client
import json
import os
import random
import signal
import string
import time
import urllib.error
import urllib.request

import pytest
import redis

from tests.conftest import BROWSER_UA, NO_LIMITS, SECRET, Server, wait_until
from widget import create_app
from widget.embedded_redis import EmbeddedRedis, answers, socket_url
from widget.store import Site, Store

ORIGIN = "http://localhost"
BLOG = "https://blog.example.com"


def make_app(redis_url, **settings):
    config = {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS | settings
    app = create_app(config)
    app.extensions["reactions"].save_site(Site("blog", (BLOG,)))
    return app


def vote(
    client,
    origin=BLOG,
    site="blog",
    article="post",
    reader="reader-aaaaaaaaaaaaaaaa",
    reaction="happy",
    agent=BROWSER_UA,
    **headers,
):
    body = {"site": site, "article": article, "reader": reader, "reaction": reaction}
    return client.post(
        "/api/v1/reactions",
        json=body,
        headers={"Origin": origin, "User-Agent": agent, **headers}
        if origin
        else {"User-Agent": agent, **headers},
    )


@pytest.fixture
def app(redis_server, redis_client):
    return make_app(redis_server.url)


# 1. Cross-site forgery ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=b",
        "text/plain",
        None,
    ],
)
@pytest.mark.parametrize("origin", [BLOG, "https://evil.example", "null", None])
@pytest.mark.parametrize("fetch_site", [None, "cross-site", "same-site"])
def test_write_matrix(client, redis_client, content_type, origin, fetch_site):
    data = json.dumps({"site": "blog", "article": "post", "reader": "r" * 20, "reaction": "happy"})
    headers = {"User-Agent": BROWSER_UA}
    if content_type:
        headers["Content-Type"] = content_type
    if origin:
        headers["Origin"] = origin
    if fetch_site:
        headers["Sec-Fetch-Site"] = fetch_site
    response = client.post("/api/v1/reactions", data=data, headers=headers)
    if content_type != "application/json":
        expected = 415
    elif origin != BLOG:
        expected = 403
    else:
        expected = 200
    assert response.status_code == expected, response.get_json()
    errors = {415: "unsupported_media_type", 403: "origin_not_allowed"}
    assert response.get_json().get("error") == errors.get(expected)
    counted = redis_client.hgetall("rx:{blog}:a:post")
    assert counted == ({"happy": "1"} if expected == 200 else {})


def test_preflight_is_cached_and_never_allows_credentials(client):
    response = client.options(
        "/api/v1/reactions",
        headers={
            "Origin": BLOG,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert int(response.headers["Access-Control-Max-Age"]) >= 600
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers["Access-Control-Allow-Origin"] == BLOG
    assert "Origin" in response.headers["Vary"]


# 3. Rate limits -----------------------------------------------------------------------------


@pytest.fixture
def steady_clock(monkeypatch):
    """Limits count in fixed windows (a client's minute, a site's hour of new articles): a
    test that ran across the end of one would see its count start again. For these tests the
    clock stands still in the middle of the current hour, of the current UTC day."""
    now = time.time()
    pinned = now - now % 3600 + 1800.5
    monkeypatch.setattr(time, "time", lambda: pinned)
    return pinned


def test_a_client_is_limited_per_site_per_minute(redis_server, redis_client, steady_clock):
    client = make_app(redis_server.url, REACTIONS_RATE_PER_MINUTE=5).test_client()
    answers = [vote(client, reader=f"reader-{n:02d}-aaaaaaaaaaaa") for n in range(8)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    limited = answers[-1]
    assert limited.get_json()["error"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    Store(redis_client).fold("blog")  # the statistics take votes in batches
    assert redis_client.zscore("rx:{blog}:index", "post") == 5
    # Another browser (another user agent) on the same address has its own allowance.
    assert (
        vote(client, reader="other-reader-aaaaaaaa", agent=BROWSER_UA + " Edg/156").status_code
        == 200
    )


def test_a_site_is_limited_per_second(redis_server, redis_client):
    client = make_app(redis_server.url, REACTIONS_SITE_RATE_PER_SECOND=3).test_client()
    answers = [
        vote(client, reader=f"reader-{n:02d}-aaaaaaaaaaaa", agent=f"{BROWSER_UA} n{n}")
        for n in range(12)
    ]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and limited[0].headers["Retry-After"] == "1"
    assert all(a.status_code in (200, 429) for a in answers)


def test_forwarded_addresses_count_only_behind_trusted_proxies(
    redis_server, redis_client, steady_clock
):
    direct = make_app(redis_server.url, REACTIONS_RATE_PER_MINUTE=2).test_client()
    spoofed = [
        vote(
            direct, reader=f"reader-{n:02d}-aaaaaaaaaaaa", **{"X-Forwarded-For": f"198.51.100.{n}"}
        )
        for n in range(3)
    ]
    assert [a.status_code for a in spoofed] == [200, 200, 429]  # the header is ignored

    redis_client.flushall()
    proxied = make_app(
        redis_server.url, REACTIONS_RATE_PER_MINUTE=2, REACTIONS_TRUSTED_PROXIES=1
    ).test_client()
    ok = [
        vote(
            proxied, reader=f"reader-{n:02d}-aaaaaaaaaaaa", **{"X-Forwarded-For": f"198.51.100.{n}"}
        )
        for n in range(3)
    ]
    assert [a.status_code for a in ok] == [200, 200, 200]
    # One IPv6 client, spelled three ways, is one client; a spoofed left-most hop is ignored.
    spellings = ["2001:db8::1", "2001:DB8:0:0:0:0:0:1", "203.0.113.9, 2001:0db8::0001"]
    answers = [
        vote(proxied, reader=f"reader-v6-{n}-aaaaaaaaaa", **{"X-Forwarded-For": s})
        for n, s in enumerate(spellings)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]


def test_no_raw_address_or_user_agent_in_logs_or_redis(redis_server, redis_client, caplog):
    caplog.set_level("DEBUG")
    client = make_app(redis_server.url, REACTIONS_TRUSTED_PROXIES=1).test_client()
    address, agent = "203.0.113.77", "Mozilla/5.0 UniqueAgent/9.9"
    for number in range(50):
        vote(
            client,
            reader=f"reader-{number:03d}-aaaaaaaaaaa",
            agent=agent,
            **{"X-Forwarded-For": address},
        )
    assert redis_client.hlen("rx:{blog}:r:post") == 50
    redis_client.bgrewriteaof()
    wait_until(lambda: redis_client.info("persistence")["aof_rewrite_in_progress"] == 0)
    raw = redis.Redis.from_url(redis_server.url)
    dumps = b"".join(raw.dump(key) or b"" for key in raw.scan_iter("*"))
    with open(os.path.join(redis_server.data_dir, "appendonly.aof"), "rb") as handle:
        aof = handle.read()
    for secret in (address, agent, "UniqueAgent"):
        assert secret.encode() not in dumps
        assert secret.encode() not in aof
        assert secret not in caplog.text


# 4. Bots ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "agent",
    [
        "",
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "Mozilla/5.0 HeadlessChrome/156.0",
        "curl/8.5.0",
        "python-requests/2.32",
        "Mozilla/5.0 (compatible; bingbot/2.0)",
    ],
)
def test_self_declared_bots_are_not_counted(client, redis_client, agent):
    response = vote(client, agent=agent)
    assert response.status_code == 200
    assert response.get_json()["counted"] is False and response.get_json()["total"] == 0
    assert redis_client.keys("rx:{blog}:a:*") == []


# 5. Memory cannot be blown up ------------------------------------------------------------------


def random_id(rng):
    return "".join(
        rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(1, 40))
    )


def test_a_flood_of_new_articles_is_capped(redis_server, redis_client, steady_clock):
    rng = random.Random(11)
    client = make_app(redis_server.url, REACTIONS_NEW_ARTICLES_PER_HOUR=100).test_client()
    unregistered = [
        vote(client, site="nosuchsite", origin=BLOG, article=random_id(rng)).status_code
        for _ in range(10_000)
    ]
    assert set(unregistered) == {403}
    assert redis_client.keys("rx:{nosuchsite}*") == []

    flood = [f"flood-{n}-{random_id(rng)}" for n in range(10_000)]
    registered = [vote(client, article=article).status_code for article in flood]
    assert registered.count(200) == 100 and registered.count(429) == 9_900
    assert len(redis_client.keys("rx:{blog}:a:*")) == 100
    assert redis_client.hlen("rx:{blog}:meta") == 100
    assert redis_client.info("stats")["evicted_keys"] == 0
    assert redis_client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    # Articles that exist still take votes while new ones are refused.
    assert vote(client, article=flood[0], reader="another-reader-aaaaaa").status_code == 200
    assert vote(client, article="one-more-new-article").status_code == 429


@pytest.mark.parametrize(
    ("field", "value", "status", "error"),
    [
        ("article", "a" * 600, 400, "invalid_field"),
        ("title", "t" * 1300, 400, "invalid_field"),
        ("url", "https://x.org/" + "u" * 2100, 400, "invalid_field"),
        ("reader", "r" * 200, 400, "invalid_field"),
        ("pad", "p" * 5000, 413, "request_entity_too_large"),
        ("pad", "p" * 10_000_000, 413, "request_entity_too_large"),
    ],
)
def test_oversized_fields_are_refused(client, redis_client, field, value, status, error):
    body = {
        "site": "blog",
        "article": "post",
        "reader": "r" * 20,
        "reaction": "happy",
        field: value,
    }
    response = client.post(
        "/api/v1/reactions", json=body, headers={"Origin": BLOG, "User-Agent": BROWSER_UA}
    )
    assert response.status_code == status
    assert response.get_json()["error"] == error
    assert redis_client.keys("rx:{blog}:*") == []


# 8. Redis down, then back ------------------------------------------------------------------


def request_json(url, body=None, origin=None, timeout=1.0):
    """A client with one second of patience: a hung worker fails the test."""
    headers = {"User-Agent": BROWSER_UA}
    if body is not None:
        headers |= {"Content-Type": "application/json", "Origin": origin}
    request = urllib.request.Request(
        url, data=json.dumps(body).encode() if body else None, headers=headers
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return (
                response.status,
                dict(response.headers),
                json.loads(response.read()),
                time.monotonic() - started,
            )
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read()), time.monotonic() - started


def test_an_outage_is_a_fast_503_and_the_server_recovers_by_itself(tmp_path):
    store_dir = tmp_path / "redis"
    backing = EmbeddedRedis(str(store_dir)).start()
    server = Server(tmp_path / "unused", REDIS_URL=backing.url).start()
    body = {
        "site": "demo",
        "article": "outage",
        "reader": "reader-outage-aaaaaaaa",
        "reaction": "happy",
    }
    try:
        assert request_json(f"{server.url}/api/v1/reactions", body, server.url)[0] == 200
        backing.stop()
        outage_began = time.monotonic()
        calls = []
        # Keep readers coming for three seconds of outage: every call must fail fast.
        while time.monotonic() - outage_began < 3:
            calls += [
                request_json(f"{server.url}/api/v1/reactions?site=demo&article=outage"),
                request_json(f"{server.url}/api/v1/reactions/batch?site=demo&article=outage"),
                request_json(
                    f"{server.url}/api/v1/reactions", body | {"reaction": "sad"}, server.url
                ),
                request_json(f"{server.url}/readyz"),
            ]
        for status, headers, payload, _ in calls:
            assert status == 503 and payload["error"] == "store_unavailable"
            assert int(headers["Retry-After"]) > 0
        assert request_json(f"{server.url}/healthz")[0] == 200
        slowest = max(c[3] for c in calls) * 1000
        print(f"\n{len(calls)} calls during the outage, all 503; slowest {slowest:.0f} ms")

        backing = EmbeddedRedis(str(store_dir)).start()
        restarted = time.monotonic()
        wait_until(lambda: request_json(f"{server.url}/readyz")[0] == 200, timeout=10)
        print(
            f"outage of {restarted - outage_began:.1f} s; ready again "
            f"{(time.monotonic() - restarted) * 1000:.0f} ms after Redis returned"
        )
        status, _, payload, _ = request_json(
            f"{server.url}/api/v1/reactions", body | {"reaction": "sad"}, server.url
        )
        assert status == 200 and payload["total"] == 1 and payload["mine"] == "sad"
    finally:
        code, output = server.stop()
        backing.stop()
    assert code == 0, output
    assert "WORKER TIMEOUT" not in output


# 9. Durability: SIGKILL server and Redis ---------------------------------------------------


def aof_pending_bytes(url):
    """What Redis has acknowledged but not yet written to its append-only file."""
    with redis.Redis.from_url(url) as connection:
        return connection.info("persistence")["aof_buffer_length"]


@pytest.mark.parametrize("fsync", ["everysec", "always"])
def test_acknowledged_reactions_survive_sigkill(tmp_path, fsync):
    """`always`: every acknowledged reaction survives a crash of Redis.

    `everysec`: while an fsync is still running (a busy disk), Redis holds new writes in memory
    for up to 2 s and acknowledges them meanwhile, so a crash of Redis within those 2 s can lose
    them. What it has written survives; the test waits for that (2 s at most, as Redis allows).
    """
    data = tmp_path / "data"
    server = Server(data, REACTIONS_APPENDFSYNC=fsync).start()
    acknowledged = []
    for number in range(40):
        reader = f"reader-{number:03d}-kill-aaaaaaaa"
        status, _, payload, _ = request_json(
            f"{server.url}/api/v1/reactions",
            {"site": "demo", "article": "crash", "reader": reader, "reaction": "happy"},
            server.url,
            timeout=5,
        )
        assert status == 200
        acknowledged.append(reader)
    if fsync == "everysec":
        wait_until(lambda: aof_pending_bytes(socket_url(str(data))) == 0)
    redis_pid = int((data / "redis.pid").read_text())
    os.kill(redis_pid, signal.SIGKILL)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    wait_until(lambda: not answers(socket_url(str(data))))

    again = Server(data).start()
    try:
        assert again.counts("crash")["happy"] == len(acknowledged) == 40
    finally:
        again.stop()


def test_http_client_without_user_agent_is_treated_as_automated(live_server, redis_client):
    connection = http.client.HTTPConnection(
        "127.0.0.1", int(live_server.url.rsplit(":", 1)[1]), timeout=5
    )
    body = json.dumps({"site": "demo", "article": "x", "reader": "r" * 20, "reaction": "happy"})
    connection.request(
        "POST",
        "/api/v1/reactions",
        body=body,
        headers={"Content-Type": "application/json", "Origin": live_server.url},
    )
    response = json.loads(connection.getresponse().read())
    assert response["counted"] is False


def test_votes_survive_redis_forgetting_the_script(client, redis_client):
    assert vote(client, reader="reader-before-flush-aa").status_code == 200
    redis_client.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    answer = vote(client, reader="reader-after-flush-aaa", reaction="sad")
    assert answer.status_code == 200 and answer.get_json()["total"] == 2
