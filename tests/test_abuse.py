"""Hostile input and failures, against a real Redis: writes only as JSON from allowed
origins, rate limits, uncounted bots, capped fields, no raw address or agent stored, and an
outage that is a fast 503 the server recovers from by itself (README, "Security")."""

import functools
import http.client
import json
import os
import random
import signal
import string
import time

import pytest
import redis

from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, Server, request_json, wait_until
from widget import config, create_app
from widget.config import ConfigError
from widget.embedded_redis import EmbeddedRedis, answers, socket_url
from widget.security import MAX_BROWSER_AGENT
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
    address="127.0.0.1",
    **headers,
):
    body = {"site": site, "article": article, "reader": reader, "reaction": reaction}
    return client.post(
        "/api/v1/reactions",
        json=body,
        headers={"Origin": origin, "User-Agent": agent, **headers}
        if origin
        else {"User-Agent": agent, **headers},
        environ_base={"REMOTE_ADDR": address},
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


def browsers(count):
    """Distinct, real-looking browser user agents: what a script rotating its agent sends."""
    return [BROWSER_UA.replace("Chrome/156.0.0.0", f"Chrome/156.1.{n}.0") for n in range(count)]


@pytest.mark.parametrize(
    "addresses",
    [
        pytest.param(["203.0.113.5"], id="one IPv4 address"),
        pytest.param([f"2001:db8:7:9::{n:x}" for n in range(1, 41)], id="one IPv6 /64"),
        pytest.param(["::ffff:203.0.113.5", "203.0.113.5"], id="IPv4 spelled as IPv6"),
    ],
)
def test_rotating_user_agents_stop_at_the_address_budget(
    redis_server, redis_client, steady_clock, addresses
):
    """A script that changes its user agent (and reader token) for every vote gets a fresh
    client allowance each time; its address's budget still holds, at its configured size."""
    client = make_app(
        redis_server.url, REACTIONS_RATE_PER_MINUTE=5, REACTIONS_ADDRESS_RATE_PER_MINUTE=20
    ).test_client()
    answers = [
        vote(
            client,
            reader=f"reader-{n:02d}-aaaaaaaaaaaa",
            agent=agent,
            address=addresses[n % len(addresses)],
        )
        for n, agent in enumerate(browsers(40))
    ]
    assert [a.status_code for a in answers] == [200] * 20 + [429] * 20
    refused = answers[-1]
    assert refused.get_json()["error"] == "rate_limited"
    assert "network" in refused.get_json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert redis_client.hgetall("rx:{blog}:a:post") == {"happy": "20"}
    # The neighbours are not held by it: another address, and another IPv6 /64.
    for address in ("198.51.100.23", "2001:db8:7:a::1"):
        assert vote(client, reader="a-neighbour-aaaaaaaaaa", address=address).status_code == 200


def test_the_client_limit_spares_the_address_budget_of_readers_behind_one_nat(
    redis_server, redis_client, steady_clock
):
    """One eager browser stops at its own limit and does not use up its office's budget."""
    client = make_app(
        redis_server.url, REACTIONS_RATE_PER_MINUTE=5, REACTIONS_ADDRESS_RATE_PER_MINUTE=12
    ).test_client()
    eager = [vote(client, reader=f"eager-{n:02d}-aaaaaaaaaaaaa") for n in range(30)]
    assert [a.status_code for a in eager] == [200] * 5 + [429] * 25
    assert "browser" in eager[-1].get_json()["detail"]
    colleagues = [
        vote(client, reader=f"colleague-{n:02d}-aaaaaaaaa", agent=agent)
        for n, agent in enumerate(browsers(7))
    ]
    assert [a.status_code for a in colleagues] == [200] * 7
    assert redis_client.hgetall("rx:{blog}:a:post") == {"happy": "12"}


@pytest.mark.parametrize(
    "name", ["REACTIONS_ADDRESS_RATE_PER_MINUTE", "REACTIONS_LOGIN_FAILURES_GLOBAL"]
)
@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_a_bad_budget_stops_the_server_naming_its_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        config.load({name: value})


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

# Real user agents. Browsers and the in-app browsers of social apps are readers; crawlers, link
# previews, headless browsers, monitors and HTTP libraries are not.
READERS = [
    BROWSER_UA,  # what the tests and benchmarks vote with
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.7 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/27.0 Chrome/125.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
    "Mozilla/5.0 (Linux; Android 10; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36 EdgA/131.0.2903.87",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 OPR/86.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 YaBrowser/24.12.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/491.0.0.61.109;]",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/491.0.0.38.107;FBBV/664069538;FBDV/iPhone15,3;FBMD/iPhone;FBSN/iOS;FBSV/18.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/666190839]",
    "Mozilla/5.0 (Linux; Android 14; SM-G991B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36 Instagram 357.0.0.25.101 Android (34/14; 480dpi; 1080x2176; samsung; SM-G991B; o1s; exynos2100; en_US; 656451534)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 357.0.0.15.98 (iPhone15,2; iOS 18_1; en_US; en; scale=3.00; 1179x2556; 657145862)",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36 musical_ly_2023709030 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/musical_ly app_version/37.7.3 ByteLocale/en ByteFullLocale/en Region/US",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 LinkedInApp/9.30.2456",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 DuckDuckGo/5",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15 (Ecosia ios@10.2.0.2061)",
    "Mozilla/5.0 (Linux; U; Android 12; en-US; Redmi Note 11 Build/SKQ1.211103.001) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/100.0.4896.58 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; M2101K6G) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 Vivaldi/7.0.3495.26",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/343.0.695551749 Mobile/15E148 Safari/604.1",
]
AUTOMATED = [
    "",
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.32.3",
    "Python-urllib/3.12",
    "python-httpx/0.28.1",
    "aiohttp/3.11",
    "axios/1.7.9",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "node-fetch",
    "undici",
    "node",
    "PostmanRuntime/7.43.0",
    "insomnia/10.2.0",
    "Java-http-client/21.0.5",
    "Java/17.0.2",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
    "Go-http-client/2.0",
    "Ruby",
    "Faraday v2.12.2",
    "GuzzleHttp/7",
    "libwww-perl/6.77",
    "Dart/3.5 (dart:io)",
    "Deno/2.1.4",
    "Bun/1.1.38",
    "reqwest/0.12.9",
    "HTTPie/3.2.4",
    "Scrapy/2.12.0 (+https://scrapy.org)",
    "WhatsApp/2.23.20.0",
    "WhatsApp/2.2447.4 A",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GoogleOther)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; DuckDuckBot-Https/1.1; https://duckduckgo.com/duckduckbot)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    "CCBot/2.0 (https://commoncrawl.org/faq/)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0 PTST/241115.161020",
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
    "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1) AppleWebKit/600.2.5 (KHTML, like Gecko) Version/8.0.2 Safari/600.2.5 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
]


@pytest.mark.parametrize(
    ("agent", "counted"), [(a, True) for a in READERS] + [(a, False) for a in AUTOMATED]
)
def test_only_browsers_are_counted(client, redis_client, agent, counted):
    response = vote(client, agent=agent)
    assert response.status_code == 200
    assert response.get_json()["counted"] is counted
    assert response.get_json()["total"] == int(counted)
    assert redis_client.hgetall("rx:{blog}:a:post") == ({"happy": "1"} if counted else {})


def test_an_agent_longer_than_any_browsers_is_not_counted(client, redis_client):
    longest = (BROWSER_UA + " Extension/1.0" * 40)[:MAX_BROWSER_AGENT]
    assert vote(client, agent=longest).get_json()["counted"] is True
    response = vote(client, reader="another-reader-aaaaaa", agent=longest + "0")
    assert response.status_code == 200 and response.get_json()["counted"] is False
    assert redis_client.hgetall("rx:{blog}:a:post") == {"happy": "1"}


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


# A client with one second of patience: a hung worker fails the test.
impatient = functools.partial(request_json, timeout=1.0)


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
        assert impatient(f"{server.url}/api/v1/reactions", body, server.url)[0] == 200
        backing.stop()
        outage_began = time.monotonic()
        calls = []
        # Keep readers coming for three seconds of outage: every call must fail fast.
        while time.monotonic() - outage_began < 3:
            calls += [
                impatient(f"{server.url}/api/v1/reactions?site=demo&article=outage"),
                impatient(f"{server.url}/api/v1/reactions/batch?site=demo&article=outage"),
                impatient(f"{server.url}/api/v1/reactions", body | {"reaction": "sad"}, server.url),
                impatient(f"{server.url}/readyz"),
            ]
        for status, headers, payload, _ in calls:
            assert status == 503 and payload["error"] == "store_unavailable"
            assert int(headers["Retry-After"]) > 0
        assert impatient(f"{server.url}/healthz")[0] == 200
        slowest = max(c[3] for c in calls) * 1000
        print(f"\n{len(calls)} calls during the outage, all 503; slowest {slowest:.0f} ms")

        backing = EmbeddedRedis(str(store_dir)).start()
        restarted = time.monotonic()
        wait_until(lambda: impatient(f"{server.url}/readyz")[0] == 200, timeout=10)
        print(
            f"outage of {restarted - outage_began:.1f} s; ready again "
            f"{(time.monotonic() - restarted) * 1000:.0f} ms after Redis returned"
        )
        status, _, payload, _ = impatient(
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
        status, _, payload, _ = impatient(
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
