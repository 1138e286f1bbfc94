"""The public API against a real Redis: the contract other clients rely on."""

import concurrent.futures
import hashlib
import hmac
import io
import json
import os
import signal
import threading
import time
from urllib.parse import quote

import pytest
import redis
from redis._parsers import _RESP2Parser

from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, wait_until
from widget import create_app
from widget.embedded_redis import EmbeddedRedis
from widget.live import await_confirmation, drain
from widget.store import (
    DAY_RETENTION_SECONDS,
    Site,
    Store,
    channel,
    channel_pattern,
    day_key,
    day_total_key,
    decode_counts,
    utc_day,
)

ORIGIN = "http://localhost"  # the test client's own origin: the demo site accepts it
READER = "reader-token-aaaaaaaaaaaa"


@pytest.fixture(params=["embedded", "cluster"])
def redis_url(request, redis_server):
    """Every API test runs on the embedded Redis and on a 3-master Redis Cluster."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url
    return redis_server.url


def vote(
    client, reaction, reader=READER, article="first-post", site="demo", origin=ORIGIN, **extra
):
    body = {"site": site, "article": article, "reader": reader, "reaction": reaction, **extra}
    return client.post("/api/v1/reactions", json=body, headers={"Origin": origin})


def counts(response):
    return {r["id"]: r["count"] for r in response.get_json()["reactions"]}


def percents(response):
    return [r["percent"] for r in response.get_json()["reactions"]]


def site_keys(redis_client):
    return sorted(redis_client.keys("rx:{*"))


def test_a_new_article_shows_zero_everywhere(client):
    response = client.get("/api/v1/reactions?site=demo&article=first-post")
    assert response.status_code == 200
    body = response.get_json()
    assert body["site"] == "demo" and body["article"] == "first-post" and body["total"] == 0
    assert [r["id"] for r in body["reactions"]] == [
        "happy", "sad", "excited", "sleepy", "angry", "surprise",
    ]  # fmt: skip
    assert all(r["count"] == 0 and r["percent"] == 0 for r in body["reactions"])
    assert all(r["emoji"] and r["label"] for r in body["reactions"])


def test_a_reader_reacts_changes_and_takes_it_back(client):
    first = vote(client, "happy")
    assert first.status_code == 200
    assert first.get_json()["mine"] == "happy"
    assert counts(first)["happy"] == 1 and percents(first)[0] == 100

    moved = vote(client, "sad")
    assert counts(moved) == {**dict.fromkeys(counts(moved), 0), "sad": 1}
    assert moved.get_json()["mine"] == "sad"

    undone = vote(client, None)
    assert undone.get_json()["total"] == 0 and undone.get_json()["mine"] is None
    assert client.get("/api/v1/reactions?site=demo&article=first-post").get_json()["total"] == 0


def test_the_same_request_twice_counts_once(client):
    vote(client, "excited")
    again = vote(client, "excited")
    assert again.get_json()["total"] == 1 and counts(again)["excited"] == 1


def test_undo_without_a_reaction_changes_nothing(client, redis_client):
    response = vote(client, None)
    assert response.status_code == 200 and response.get_json()["total"] == 0
    assert not redis_client.keys("rx:{demo}:a:*")


def test_three_readers_share_by_largest_remainder(client):
    for reader, reaction in [("a" * 20, "happy"), ("b" * 20, "sad"), ("c" * 20, "excited")]:
        response = vote(client, reaction, reader=reader)
    assert percents(response) == [34, 33, 33, 0, 0, 0]


def test_post_answers_with_the_exact_origin(client):
    response = vote(client, "happy")
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_errors_of_a_vote_are_readable_by_the_page_that_sent_it_only(client):
    bad_reader = vote(client, "happy", reader="short")
    assert bad_reader.status_code == 400
    assert bad_reader.headers.getlist("Access-Control-Allow-Origin") == [ORIGIN]
    assert bad_reader.headers["Vary"] == "Origin"
    # A page the site does not allow may read its refusal, so its bar can say why.
    stranger = vote(client, "happy", origin="https://elsewhere.example")
    assert stranger.status_code == 403
    assert stranger.headers.getlist("Access-Control-Allow-Origin") == ["https://elsewhere.example"]
    assert stranger.headers["Vary"] == "Origin"
    read = client.get("/api/v1/reactions?site=demo&article=first-post")
    assert read.headers.getlist("Access-Control-Allow-Origin") == ["*"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/reactions?site=demo&article=first-post",
        "/api/v1/reactions/batch?site=demo&article=first-post&article=second-post",
    ],
)
@pytest.mark.parametrize(
    "echo", ["{}", "W/{}", '"an-older-one", {}', "*"], ids=["same", "weak", "list", "star"]
)
def test_reads_are_public_and_revalidated_by_etag(client, path, echo):
    vote(client, "happy")
    page = {"Origin": "https://blog.example"}  # a host page on another origin reads it
    first = client.get(path, headers=page)
    assert first.headers.getlist("Access-Control-Allow-Origin") == ["*"]  # one value, or none
    assert "no-cache" in first.headers["Cache-Control"]  # browsers revalidate
    assert first.headers["CDN-Cache-Control"] == "public, max-age=5"  # a CDN may hold it
    etag = first.headers["ETag"]
    repeat = client.get(path, headers={**page, "If-None-Match": echo.format(etag)})
    assert repeat.status_code == 304 and repeat.data == b""
    assert repeat.headers.getlist("Access-Control-Allow-Origin") == ["*"]
    # What a cache needs to keep serving its copy.
    assert repeat.headers["ETag"] == etag
    assert repeat.headers["CDN-Cache-Control"] == "public, max-age=5"
    vote(client, "sad", reader="another-reader-bbbbbbbb")
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert client.get(path, headers={"If-None-Match": '"an-older-one"'}).status_code == 200
    totals = changed.get_json().get("articles", {"first-post": changed.get_json()})
    assert totals["first-post"]["total"] == 2


def test_preflight_allows_json_posts_and_is_cached(client):
    response = client.options(
        "/api/v1/reactions",
        headers={
            "Origin": "https://blog.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://blog.example.com"
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_batch_reads_many_articles_in_one_request(client):
    vote(client, "happy", article="one")
    vote(client, "sleepy", article="two")
    response = client.get("/api/v1/reactions/batch?site=demo&article=one&article=two&article=three")
    assert response.status_code == 200
    articles = response.get_json()["articles"]
    assert list(articles) == ["one", "two", "three"]
    assert counts_of(articles["one"])["happy"] == 1
    assert counts_of(articles["two"])["sleepy"] == 1
    assert articles["three"]["total"] == 0


def test_a_batch_answers_under_the_article_ids_as_the_page_wrote_them(client):
    asked = ['a "quoted" title', "Ünïcode ✓ post", "HTTPS://Blog.Example/Post#top"]
    vote(client, "happy", article="https://blog.example/Post")
    query = "&".join(f"article={quote(article)}" for article in asked)
    articles = client.get(f"/api/v1/reactions/batch?site=demo&{query}").get_json()["articles"]
    assert list(articles) == asked
    assert articles[asked[2]]["article"] == "https://blog.example/Post"
    assert articles[asked[2]]["total"] == 1
    assert articles[asked[1]]["article"] == asked[1] and articles[asked[1]]["total"] == 0


def counts_of(body):
    return {r["id"]: r["count"] for r in body["reactions"]}


def test_a_registered_site_accepts_its_origins_only(client, store, redis_client):
    store.save_site(Site("blog", ("https://blog.example.com",)))
    ok = vote(client, "happy", site="blog", origin="https://blog.example.com")
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://blog.example.com"
    before = {key: redis_client.dump(key) for key in site_keys(redis_client)}

    refused = vote(client, "sad", site="blog", origin="https://evil.example", article="new")
    assert refused.status_code == 403
    assert refused.get_json()["error"] == "origin_not_allowed"
    # Readable by the refused page, so its bar can say why; nothing was written.
    assert refused.headers["Access-Control-Allow-Origin"] == "https://evil.example"
    assert "reactions sites origins add blog https://evil.example" in refused.get_json()["detail"]
    assert {key: redis_client.dump(key) for key in site_keys(redis_client)} == before


@pytest.mark.parametrize(
    ("origin", "site", "error"),
    [
        (None, "demo", "origin_not_allowed"),
        ("https://evil.example", "demo", "origin_not_allowed"),
        ("null", "demo", "origin_not_allowed"),
        (ORIGIN, "nosuchsite", "unknown_site"),
    ],
)
def test_refused_writes_create_nothing(client, redis_client, origin, site, error):
    headers = {"Origin": origin} if origin else {}
    body = {"site": site, "article": "a", "reader": READER, "reaction": "happy"}
    response = client.post("/api/v1/reactions", json=body, headers=headers)
    assert response.status_code == 403
    assert set(response.get_json()) == {"error", "detail"}
    assert response.get_json()["error"] == error
    assert site_keys(redis_client) == []


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/x-www-form-urlencoded", "site=demo&article=a&reaction=happy"),
        ("multipart/form-data; boundary=x", "--x\r\n\r\n--x--"),
        (
            "text/plain",
            json.dumps({"site": "demo", "article": "a", "reader": READER, "reaction": "happy"}),
        ),
        (None, '{"site":"demo"}'),
    ],
)
def test_non_json_writes_get_415(client, redis_client, content_type, data):
    headers = {"Origin": ORIGIN}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/api/v1/reactions", data=data, headers=headers)
    assert response.status_code == 415
    assert response.get_json()["error"] == "unsupported_media_type"
    assert site_keys(redis_client) == []


@pytest.mark.parametrize(
    "body",
    [
        {"article": "a", "reader": READER, "reaction": "happy"},
        {"site": "demo", "reader": READER, "reaction": "happy"},
        {"site": "demo", "article": "a", "reaction": "happy"},
        {"site": "demo", "article": "a", "reader": READER},
        {"site": "demo", "article": "a", "reader": READER, "reaction": "joy"},
        {"site": "demo", "article": "a", "reader": READER, "reaction": 3},
        {"site": "demo", "article": "a", "reader": "short", "reaction": "happy"},
        {"site": "demo", "article": "", "reader": READER, "reaction": "happy"},
        {"site": "demo", "article": "a" * 600, "reader": READER, "reaction": "happy"},
        {"site": "demo", "article": ["a"], "reader": READER, "reaction": "happy"},
        {"site": "DEMO!", "article": "a", "reader": READER, "reaction": "happy"},
        {"site": "demo", "article": "a", "reader": READER, "reaction": "happy", "url": "javascript:x"},
        {"site": "demo", "article": "a", "reader": READER, "reaction": "happy", "title": 5},
    ],
)  # fmt: skip
def test_bad_fields_get_400_and_store_nothing(client, redis_client, body):
    response = client.post("/api/v1/reactions", json=body, headers={"Origin": ORIGIN})
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()) == {"error", "detail"}
    assert response.get_json()["error"] == "invalid_field"
    assert response.get_json()["detail"]
    assert site_keys(redis_client) == []


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', "null", "\xff\xfe"])
def test_malformed_json_gets_400(client, raw):
    response = client.post(
        "/api/v1/reactions",
        data=raw.encode("latin-1"),
        headers={"Origin": ORIGIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_field"


def test_a_vote_body_is_utf8_with_or_without_a_byte_order_mark(client, redis_client):
    body = json.dumps({"site": "demo", "article": "ü", "reader": READER, "reaction": "happy"})
    headers = {"Origin": ORIGIN, "Content-Type": "application/json"}
    post = client.post("/api/v1/reactions", data="\ufeff".encode() + body.encode(), headers=headers)
    assert post.status_code == 200
    assert post.get_json()["article"] == "ü"
    # RFC 8259: JSON between systems is UTF-8; UTF-16 gets a clear 400 and stores nothing.
    refused = client.post("/api/v1/reactions", data=body.encode("utf-16"), headers=headers)
    assert refused.status_code == 400
    assert refused.get_json()["error"] == "invalid_field"
    assert redis_client.hgetall("rx:{demo}:a:ü") == {"happy": "1"}


def test_reader_hashes_stay_hmac_sha256_under_the_server_secret(store):
    """Stored reader ids must not change between versions: a reader would count twice."""

    def plain(secret: str, token: str) -> str:
        message = f"reader\0demo\0{token}".encode()
        return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]

    for token in [READER, "ü-reader-" * 3]:
        assert store.reader_hash("demo", token) == plain(store.server_secret(), token)
    store.secret = "another-secret"  # a new secret keys the HMAC anew
    assert store.reader_hash("demo", READER) == plain("another-secret", READER)


def test_a_body_too_large_gets_413(client, redis_client):
    body = json.dumps(
        {"site": "demo", "article": "a", "reader": READER, "reaction": "happy", "pad": "x" * 10000}
    )
    response = client.post(
        "/api/v1/reactions",
        data=body,
        headers={"Origin": ORIGIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert set(response.get_json()) == {"error", "detail"}
    assert site_keys(redis_client) == []


@pytest.mark.parametrize("size", [100, 10_000])
def test_a_body_without_a_declared_length_is_read_up_to_the_limit(client, redis_client, size):
    """A chunked upload has no Content-Length: it is read through the server's terminated
    stream, and refused with 413 past the limit like a declared one."""
    body = json.dumps(
        {"site": "demo", "article": "a", "reader": READER, "reaction": "happy", "pad": "x" * size}
    ).encode()
    response = client.post(
        "/api/v1/reactions",
        input_stream=io.BytesIO(body),
        headers={
            "Origin": ORIGIN,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.request.content_length is None
    if size > 1000:
        assert response.status_code == 413
        assert response.get_json()["error"] == "request_entity_too_large"
        assert site_keys(redis_client) == []
    else:
        assert response.status_code == 200 and response.get_json()["mine"] == "happy"


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("site=demo", 400, "invalid_field"),
        ("article=a", 400, "invalid_field"),
        ("site=nosuch&article=a", 403, "unknown_site"),
        ("site=demo&article=", 400, "invalid_field"),
    ],
)
def test_bad_reads_get_a_json_error(client, query, status, error):
    response = client.get(f"/api/v1/reactions?{query}")
    assert response.status_code == status
    assert set(response.get_json()) == {"error", "detail"}
    assert response.get_json()["error"] == error


@pytest.mark.parametrize("count", [0, 51])
def test_batch_limits(client, count):
    articles = "".join(f"&article=a{i}" for i in range(count))
    response = client.get(f"/api/v1/reactions/batch?site=demo{articles}")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_field"


def test_a_batch_of_exactly_the_limit_is_read(client):
    articles = "".join(f"&article=a{i}" for i in range(50))
    response = client.get(f"/api/v1/reactions/batch?site=demo{articles}")
    assert response.status_code == 200
    assert len(response.get_json()["articles"]) == 50


def test_unknown_paths_and_methods_get_json(client):
    missing = client.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    wrong = client.delete("/api/v1/reactions")
    assert wrong.status_code == 405 and wrong.get_json()["error"] == "method_not_allowed"


def test_title_and_url_are_kept_for_the_article(client, redis_client):
    vote(client, "happy", url="http://localhost/p?x=1", title="  A <b>title</b>\n")
    meta = json.loads(redis_client.hget("rx:{demo}:meta", "first-post"))
    assert meta["title"] == "A <b>title</b>" and meta["url"] == "http://localhost/p?x=1"


def test_day_buckets_count_reactions_added_and_expire_after_the_retention(client, redis_client):
    vote(client, "happy")
    vote(client, "sad")  # a change: one more reaction added today, on another field
    vote(client, "happy", reader="reader-token-bbbbbbbbbbbb")
    day = utc_day(time.time())
    article_day, site_day = day_key("demo", day), day_total_key("demo", day)
    Store(redis_client).fold("demo")  # the statistics take votes in batches
    assert redis_client.hgetall(article_day) == {"first-post|happy": "2", "first-post|sad": "1"}
    assert redis_client.hgetall(site_day) == {"happy": "2", "sad": "1"}
    for key in (article_day, site_day):
        assert DAY_RETENTION_SECONDS - 60 < redis_client.ttl(key) <= DAY_RETENTION_SECONDS


def test_counts_served_by_one_app_server_follow_votes_taken_by_another(
    app, client, redis_url, store
):
    """Each app server (each worker) answers counts reads from memory, kept current by the
    pub/sub messages of every vote: after a burst of votes taken elsewhere it must show exactly
    the stored counts, never an older message's, and zeros after an admin's reset."""
    other = create_app(
        {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET, "TESTING": True} | NO_LIMITS
    )
    path = "/api/v1/reactions?site=demo&article=busy"
    app.extensions["reactions_live"].counts_many("demo", [])  # starts its listener
    wait_until(app.extensions["reactions_live"].connected.is_set)
    assert client.get(path).get_json()["total"] == 0  # now held in this app's memory
    reactions = ["happy", "sad", "excited", "sleepy", "angry", None]

    def change_their_minds(first_reader):
        voter = other.test_client()
        voter.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
        for number in range(30):
            reader = f"burst-reader-{first_reader + number % 5:02d}-aaaaaa"
            answer = vote(voter, reactions[number % 6], reader=reader, article="busy")
            assert answer.status_code == 200

    # 8 × 5 readers at once, so that many messages arrive between two reads of the listener.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(change_their_minds, range(0, 40, 5)))
    site = store.get_site("demo")
    stored = store.counts("demo", "busy")
    assert sum(stored.values()) > 0
    expected = {r.id: stored.get(r.id, 0) for r in site.reactions}
    wait_until(lambda: counts(client.get(path)) == expected, timeout=5)

    store.reset_article(site, "busy")
    wait_until(lambda: client.get(path).get_json()["total"] == 0, timeout=5)


def test_a_listener_counts_as_connected_once_redis_confirms_and_lets_go_when_stopped(
    tmp_path,
):
    with EmbeddedRedis(str(tmp_path)) as server:
        app = create_app({"REDIS_URL": server.url, "REACTIONS_SECRET_KEY": SECRET})
        hub = app.extensions["reactions_live"]
        watcher = redis.Redis.from_url(server.url)
        hub.counts_many("demo", [])  # starts the listener
        wait_until(hub.connected.is_set)
        assert watcher.execute_command("PUBSUB", "NUMPAT") == 1
        hub.stop()
        assert not hub.connected.is_set()
        watcher.publish(channel("demo", "any"), "")  # its next message ends it
        wait_until(lambda: watcher.execute_command("PUBSUB", "NUMPAT") == 0)
        assert hub.counts_many("demo", ["any"]) == [{}]  # from Redis now
        watcher.close()


def test_a_malformed_message_leaves_the_listener_running_and_the_cache_honest(
    app, client, redis_client
):
    """Anyone with access to Redis may publish on an article's channel: a message that is not
    counts is dropped with the article's cached counts, and later votes still arrive."""
    hub = app.extensions["reactions_live"]
    hub.counts_many("demo", [])
    wait_until(hub.connected.is_set)
    path = "/api/v1/reactions?site=demo&article=first-post"
    assert client.get(path).get_json()["total"] == 0  # cached now
    redis_client.publish(channel("demo", "first-post"), '{"happy":1}')
    redis_client.publish(channel("demo", "first-post"), "happy,many")
    redis_client.publish(channel("demo", "first-post"), "happy,1,sad")
    redis_client.hincrby("rx:{demo}:a:first-post", "sad", 2)  # changed behind the cache's back
    wait_until(lambda: client.get(path).get_json()["total"] == 2, timeout=5)
    other = create_app({"REDIS_URL": app.config["REDIS_URL"], "REACTIONS_SECRET_KEY": SECRET})
    assert vote(other.test_client(), "happy").status_code == 200
    other.extensions["reactions_live"].stop()
    wait_until(lambda: client.get(path).get_json()["total"] == 3, timeout=5)
    assert hub._listener.is_alive()


def test_each_change_publishes_the_counts_as_stored(client, store):
    """A vote's message is HGETALL's reply joined by commas, which every listener decodes;
    a reset publishes no counts at all."""
    pubsub = store.client.pubsub()
    pubsub.subscribe(channel("demo", "first-post"))
    await_confirmation(pubsub, "subscribe", 5)
    assert vote(client, "happy").status_code == 200
    assert vote(client, "sad", reader="reader-two-aaaaaaaaaaaa").status_code == 200
    assert vote(client, "sad", reader="reader-two-aaaaaaaaaaaa").status_code == 200  # no change
    assert vote(client, None).status_code == 200
    store.reset_article(store.get_site("demo"), "first-post")
    received = []
    deadline = time.monotonic() + 5
    while len(received) < 4 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            received.append(message["data"])
    assert [decode_counts(data) for data in received] == [
        {"happy": 1}, {"happy": 1, "sad": 1}, {"sad": 1}, {}
    ]  # fmt: skip
    assert received[3] == ""
    pubsub.close()


@pytest.mark.parametrize("flat", ["{}", '{"happy":1}', "happy", "happy,many", "happy,1,sad"])
def test_anything_but_counts_is_not_decoded_as_counts(flat):
    with pytest.raises(ValueError):
        decode_counts(flat)


@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_the_listener_drains_a_batch_keeping_the_newest_message_of_each_channel(
    redis_server, parser
):
    """The listener reads a batch of messages straight from redis-py's hiredis reader (or,
    without hiredis, through get_message): more than one socket read's worth, with a health
    check's reply among them, must leave exactly the last data of each channel."""
    options = {"parser_class": _RESP2Parser} if parser == "python" else {}
    listener = redis.Redis.from_url(redis_server.url, decode_responses=True, protocol=2, **options)
    publisher = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pubsub = listener.pubsub()
    pubsub.psubscribe(channel_pattern())
    await_confirmation(pubsub, "psubscribe", 5)
    # Valid counts, since every listener of this Redis gets them too: 3,000 messages of
    # about 200 bytes, many reads of 64 kB.
    padding = ",".join(f"r{i},{i}" for i in range(30))
    sent: dict[str, str] = {}
    for number in range(3000):
        name = channel("drain-test", f"article-{number % 7}")
        sent[name] = f"happy,{number},{padding}"
        publisher.publish(name, sent[name])
        if number == 1500:
            pubsub.ping()  # its reply arrives among the messages
    publisher.publish(channel("drain-test", "last"), "")
    sent[channel("drain-test", "last")] = ""
    first = pubsub.get_message(timeout=5)
    newest = {first["channel"]: first["data"]}
    last = channel("drain-test", "last")
    wait_until(lambda: drain(pubsub, newest) or last in newest, timeout=5)
    assert newest == sent
    pubsub.close()
    listener.close()
    publisher.close()


@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_the_listener_waits_for_the_rest_of_a_partly_arrived_message(redis_server, parser):
    """A message larger than the socket's buffers arrives in pieces: Redis stops (SIGSTOP)
    with only the first of them sent, and goes on a moment later. The listener must wait for
    the rest, as for any reply, instead of failing on the half it has (TimeoutError)."""
    options = {"parser_class": _RESP2Parser} if parser == "python" else {}
    listener = redis.Redis.from_url(
        redis_server.url, decode_responses=True, protocol=2, socket_timeout=5, **options
    )
    publisher = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pubsub = listener.pubsub()
    pubsub.psubscribe("drain-test:*")  # no app's listener hears these
    await_confirmation(pubsub, "psubscribe", 5)
    large = "happy," + "9" * 4_000_000
    pid = redis_server.process.pid
    resume = threading.Timer(0.3, os.kill, (pid, signal.SIGCONT))
    try:
        assert publisher.publish("drain-test:large", large) == 1
        wait_until(lambda: pubsub.connection.can_read(timeout=0))  # its first bytes are here
        os.kill(pid, signal.SIGSTOP)
        resume.start()  # Redis sends the rest only after a moment
        newest: dict[str, str] = {}
        drain(pubsub, newest)
        assert newest == {"drain-test:large": large}
    finally:
        resume.cancel()
        os.kill(pid, signal.SIGCONT)
        pubsub.close()
        listener.close()
        publisher.close()


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "redis": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


@pytest.fixture
def app_without_redis(tmp_path):
    # A socket path nothing listens on: Redis is "down".
    return create_app(
        {"REDIS_URL": f"unix://{tmp_path}/none.sock", "REACTIONS_SECRET_KEY": "x" * 20}
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/readyz"),
        ("get", "/api/v1/reactions?site=demo&article=a"),
        ("get", "/api/v1/reactions/batch?site=demo&article=a"),
        ("post", "/api/v1/reactions"),
    ],
)
def test_redis_down_is_a_quick_503(app_without_redis, method, path):
    client = app_without_redis.test_client()
    body = {"site": "demo", "article": "a", "reader": READER, "reaction": "happy"}
    kwargs = {"json": body, "headers": {"Origin": ORIGIN}} if method == "post" else {}
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 503
    assert response.get_json()["error"] == "store_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok", "redis": "unreachable"}


def node_pool(client, key):
    """The connection pool that serves `key` (on a cluster, its master's)."""
    if isinstance(client, redis.RedisCluster):
        return client.get_node_from_key(key).redis_connection.connection_pool
    return client.connection_pool


def leave_a_reply(connection, pool):
    # As if a request were killed between sending a command and reading its reply.
    connection.send_command("PING")


def close_from_redis(connection, pool):
    connection.send_command("CLIENT", "ID")
    own_id = connection.read_response()
    redis.Redis(connection_pool=pool).client_kill_filter(_id=own_id)


@pytest.mark.parametrize("spoil", [leave_a_reply, close_from_redis])
def test_a_spoiled_pooled_connection_never_answers_the_next_command(store, spoil):
    key = "rx:test:{demo}:value"
    store.client.set(key, "expected")
    pool = node_pool(store.client, key)
    connection = pool.get_connection()
    assert connection.can_read() is False  # idle and open: ready for a command

    spoil(connection, pool)

    def spoiled():
        try:
            return connection.can_read()
        except redis.ConnectionError:
            return True  # redis-py's own check saw the closed socket

    wait_until(spoiled)
    pool.release(connection)
    assert store.client.get(key) == "expected"


def test_waiting_for_a_reply_ends_when_it_arrives_or_at_the_timeout(store):
    # The live listener waits like this for each pub/sub message.
    pool = node_pool(store.client, "rx:test:{demo}:value")
    connection = pool.get_connection()
    try:
        assert connection.can_read(timeout=0.05) is False
        connection.send_command("PING")
        assert connection.can_read(timeout=5) is True
        assert connection.read_response() == "PONG"
        assert connection._sock.gettimeout() == connection.socket_timeout
    finally:
        pool.release(connection)


def test_embed_script_is_served_cacheable(client):
    response = client.get("/embed.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert "max-age" in response.headers["Cache-Control"]
    assert b"emoji-reactions" in response.data
    version = response.headers["ETag"].strip('"')
    pinned = client.get(f"/embed.{version}.js")
    assert pinned.status_code == 200 and "immutable" in pinned.headers["Cache-Control"]
    old = client.get("/embed.0123456789ab.js")
    assert old.status_code == 302 and old.headers["Location"].endswith("/embed.js")


def test_demo_pages_embed_the_bar_like_a_site_owner(client):
    page = client.get("/demo").get_data(as_text=True)
    assert 'data-site="demo" async></script>' in page and "/embed.js" in page
    assert '<emoji-reactions data-article="slow-mornings">' in page
    blog = client.get("/demo/blog").get_data(as_text=True)
    assert blog.count("<emoji-reactions") == 3
    assert "script-src 'self'" in client.get("/demo").headers["Content-Security-Policy"]
