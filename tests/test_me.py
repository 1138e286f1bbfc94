"""Readers' own data: a reader lists and takes back every reaction they gave on a site
(GET and DELETE /api/v1/me, the token in a header), on the real embedded Redis."""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter

import pytest
from click.testing import CliRunner
from playwright.sync_api import expect

from tests.servers import NO_LIMITS, PATIENT_REDIS, SECRET, wait_until
from widget import create_app
from widget.cli import main
from widget.reactions import DEFAULT_REACTIONS
from widget.store import (
    Site,
    channel,
    counts_key,
    index_key,
    own_field,
    own_key,
    readers_key,
)

ORIGIN = "https://blog.example"
TOKEN = "reader-token-aaaaaaaaaaaa"
OTHER_TOKEN = "reader-token-bbbbbbbbbbbb"


@pytest.fixture
def blog(store):
    return store.save_site(Site("blog", (ORIGIN,)))


def vote(client, article, reaction, token=TOKEN, site="blog", origin=ORIGIN):
    response = client.post(
        "/api/v1/reactions",
        json={
            "site": site,
            "article": article,
            "reader": token,
            "reaction": reaction,
            "url": f"{origin}/{article}",
            "title": f"About {article}",
        },
        headers={"Origin": origin},
    )
    assert response.status_code == 200, response.json
    return response.json


def me(client, method="GET", token=TOKEN, site="blog", origin=ORIGIN, query=""):
    headers = {"Origin": origin} if origin else {}
    if token is not None:
        headers["X-Reader-Token"] = token
    return client.open(f"/api/v1/me?site={site}{query}", method=method, headers=headers)


def listed(response):
    assert response.status_code == 200, response.json
    return {(r["article"], r["reaction"]) for r in response.json["reactions"]}


def test_a_reader_sees_every_reaction_they_gave_on_the_site(client, blog):
    vote(client, "first", "happy")
    vote(client, "second", "sad")
    vote(client, "second", "excited")  # changed: listed once, as it is now
    vote(client, "third", "happy")
    vote(client, "third", None)  # taken back: not listed
    vote(client, "first", "sad", token=OTHER_TOKEN)

    response = me(client)

    assert response.json["site"] == "blog"
    assert sorted(response.json["reactions"], key=lambda r: r["article"]) == [
        {
            "article": "first",
            "reaction": "happy",
            "url": f"{ORIGIN}/first",
            "title": "About first",
            "set": "",
        },
        {
            "article": "second",
            "reaction": "excited",
            "url": f"{ORIGIN}/second",
            "title": "About second",
            "set": "",
        },
    ]
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Cache-Control"] == "no-store"


def test_an_erase_takes_every_reaction_back_at_once(client, store, redis_client, blog):
    articles = [f"post-{n}" for n in range(5)]
    for n, article in enumerate(articles):
        vote(client, article, "happy")
        vote(client, article, "sad" if n % 2 else "happy", token=OTHER_TOKEN)
    reader = store.reader_hash("blog", TOKEN)
    subscription = redis_client.pubsub()
    subscription.psubscribe(channel("blog", "*"))
    wait_until(lambda: subscription.get_message(timeout=0.1))  # the psubscribe confirmation

    response = me(client, "DELETE")

    assert listed(response) == {(a, "happy") for a in articles}
    for n, article in enumerate(articles):
        assert store.counts("blog", article) == ({"sad": 1} if n % 2 else {"happy": 1})
        assert not redis_client.hexists(readers_key("blog", article), reader)
        assert redis_client.hexists(
            readers_key("blog", article), store.reader_hash("blog", OTHER_TOKEN)
        )
    assert not redis_client.hexists(own_key("blog", reader), own_field(reader))
    published = {}
    while len(published) < len(articles):
        message = wait_until(lambda: subscription.get_message(timeout=0.1))
        published[message["channel"].rsplit(":", 1)[1]] = message["data"]
    subscription.close()
    assert published == {a: "sad,1" if n % 2 else "happy,1" for n, a in enumerate(articles)}
    assert client.get("/api/v1/reactions?site=blog&article=post-0").json["total"] == 1
    # The statistics, folded, count what is left; a second erase finds nothing to take back.
    top = store.top_articles("blog", None, 0, 10)
    assert {a.article: a.total for a in top} == dict.fromkeys(articles, 1)
    assert store.site_stats([blog])[0].total == len(articles)
    happy = redis_client.zmscore(index_key("blog", "happy"), articles)
    assert happy == [0 if n % 2 else 1 for n in range(len(articles))]
    assert listed(me(client, "DELETE")) == set()
    assert all(min(store.counts("blog", a).values()) == 1 for a in articles)


def test_an_erase_of_one_article_keeps_the_others(client, store, blog):
    vote(client, "first", "happy")
    vote(client, "second", "sad")

    response = me(client, "DELETE", query="&article=first")

    assert listed(response) == {("first", "happy")}
    assert store.counts("blog", "first") == {}
    assert listed(me(client)) == {("second", "sad")}


def test_a_reader_votes_again_after_an_erase(client, store, blog):
    vote(client, "first", "happy")
    me(client, "DELETE")

    vote(client, "first", "sad")

    assert store.counts("blog", "first") == {"sad": 1}
    assert listed(me(client)) == {("first", "sad")}


def test_another_sites_or_another_readers_data_is_never_listed_or_erased(client, store, blog):
    other = "https://other.example"
    store.save_site(Site("other", (other,)))
    vote(client, "first", "happy")
    vote(client, "first", "sad", site="other", origin=other)
    vote(client, "first", "excited", token=OTHER_TOKEN)

    assert listed(me(client, "DELETE")) == {("first", "happy")}

    assert store.counts("blog", "first") == {"excited": 1}
    assert store.counts("other", "first") == {"sad": 1}
    assert listed(me(client, site="other", origin=other)) == {("first", "sad")}
    assert listed(me(client, token=OTHER_TOKEN)) == {("first", "excited")}


@pytest.mark.parametrize(
    ("query", "token"),
    [
        (f"&reader={TOKEN}", TOKEN),
        (f"&token={TOKEN}", None),
        (f"&article={TOKEN}", TOKEN),  # any place in the URL
        ("", None),  # no token at all
        ("", "short"),  # not a token the bar makes
    ],
    ids=["reader-param", "token-param-without-header", "token-elsewhere", "missing", "invalid"],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_token_in_the_url_or_no_valid_token_is_refused(client, store, blog, method, query, token):
    vote(client, "first", "happy")

    response = me(client, method, token=token, query=query)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_field"
    assert store.counts("blog", "first") == {"happy": 1}


@pytest.mark.parametrize(
    ("site", "headers"),
    [
        ("blog", {"Origin": "https://evil.example"}),
        ("blog", {}),
        # A same-origin request of this server's own page: not one the blog allows.
        ("blog", {"Sec-Fetch-Site": "same-origin"}),
        ("nosuch", {"Origin": ORIGIN}),
    ],
    ids=["foreign-origin", "no-origin", "this-servers-own-page", "unknown-site"],
)
def test_only_the_sites_own_pages_may_read_or_erase(client, store, blog, site, headers):
    vote(client, "first", "happy")

    responses = [
        client.open(
            f"/api/v1/me?site={site}", method=method, headers={"X-Reader-Token": TOKEN} | headers
        )
        for method in ("GET", "DELETE")
    ]

    assert [r.status_code for r in responses] == [403, 403]
    assert store.counts("blog", "first") == {"happy": 1}


def test_the_demo_on_this_servers_own_origin_lists_without_an_origin_header(client):
    """A browser sends no Origin with a same-origin GET; Sec-Fetch-Site says what it is."""
    vote(client, "first", "happy", site="demo", origin="http://localhost")

    response = client.get(
        "/api/v1/me?site=demo", headers={"X-Reader-Token": TOKEN, "Sec-Fetch-Site": "same-origin"}
    )

    assert listed(response) == {("first", "happy")}


def test_a_page_may_send_the_token_header_after_a_preflight(client, blog):
    response = client.options(
        "/api/v1/me?site=blog",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "x-reader-token",
        },
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "DELETE" in response.headers["Access-Control-Allow-Methods"]
    assert "X-Reader-Token" in response.headers["Access-Control-Allow-Headers"]


def test_reads_and_erases_are_rate_limited_per_address(redis_url, redis_client):
    app = create_app(
        {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET, "TESTING": True}
        | NO_LIMITS
        | PATIENT_REDIS
        | {"REACTIONS_OWN_DATA_RATE_PER_MINUTE": 3}
    )
    try:
        app.extensions["reactions"].save_site(Site("blog", (ORIGIN,)))
        client = app.test_client()
        statuses = [me(client).status_code, me(client, "DELETE").status_code]
        statuses += [me(client, token=OTHER_TOKEN).status_code for _ in range(2)]  # same address

        assert statuses == [200, 200, 200, 429]
        limited = me(client, "DELETE")
        assert limited.status_code == 429
        assert limited.json["error"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
    finally:
        app.extensions["reactions_live"].stop()


def test_concurrent_votes_and_erases_leave_exact_counts(store, redis_client, blog):
    articles = [f"post-{n}" for n in range(8)]
    readers = [store.reader_hash("blog", f"reader-token-{n:012d}") for n in range(6)]
    reactions = ["happy", "sad", "excited", None]

    def act(seed):
        rng = random.Random(seed)
        for _ in range(150):
            reader = rng.choice(readers)
            if rng.random() < 0.1:
                store.own_reactions("blog", reader, erase=True)
            else:
                store.set_reaction(blog, rng.choice(articles), reader, rng.choice(reactions))

    threads = [threading.Thread(target=act, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for article in articles:
        chosen = Counter(redis_client.hgetall(readers_key("blog", article)).values())
        assert store.counts("blog", article) == dict(chosen)
    for reader in readers:
        actual = {
            (a, c)
            for a in articles
            if (c := redis_client.hget(readers_key("blog", a), reader)) is not None
        }
        assert {(r.article, r.reaction) for r in store.own_reactions("blog", reader)} == actual
    stats = {a.article: a.total for a in store.top_articles("blog", None, 0, 100)}
    assert {a: stats.get(a, 0) for a in articles} == {
        a: sum(store.counts("blog", a).values()) for a in articles
    }


def test_an_admin_reset_leaves_no_stale_choice_to_list(client, store, blog):
    vote(client, "first", "happy")
    vote(client, "second", "sad")

    store.reset_article(blog, "first")

    assert listed(me(client)) == {("second", "sad")}
    assert listed(me(client, "DELETE")) == {("second", "sad")}
    assert store.counts("blog", "first") == {}


def test_an_erase_works_on_a_redis_cluster(redis_cluster):
    app = create_app(
        {"REDIS_URL": redis_cluster.url, "REACTIONS_SECRET_KEY": SECRET, "TESTING": True}
        | NO_LIMITS
        | PATIENT_REDIS
    )
    try:
        store = app.extensions["reactions"]
        store.save_site(Site("clustered", (ORIGIN,)))
        client = app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"
        for article in ("first", "second", "third"):
            vote(client, article, "happy", site="clustered")
            vote(client, article, "sad", token=OTHER_TOKEN, site="clustered")

        response = me(client, "DELETE", site="clustered")

        assert listed(response) == {(a, "happy") for a in ("first", "second", "third")}
        for article in ("first", "second", "third"):
            assert store.counts("clustered", article) == {"sad": 1}
            assert redis_cluster.master_of("clustered") == redis_cluster.master_of(
                counts_key("clustered", article)
            )
        assert listed(me(client, site="clustered")) == set()
    finally:
        app.extensions["reactions_live"].stop()


def test_in_the_bar_a_reader_lists_and_takes_back_their_reactions_by_keyboard(
    page, live_server, store, redis_client
):
    """On a page with two bars of the demo site, the reader votes on both, opens "Your
    reactions" with the keyboard, sees both, and takes them back: both bars show 0 again."""
    html = (
        "<title>Two posts</title>"
        '<emoji-reactions data-article="first" data-title="First post"></emoji-reactions>'
        '<emoji-reactions data-article="second" data-title="Second post"></emoji-reactions>'
        '<script src="/embed.js" data-site="demo" data-live="off"></script>'
    )
    page.route(f"{live_server.url}/two-posts", lambda route: route.fulfill(body=html,
               content_type="text/html"))  # fmt: skip
    page.goto(f"{live_server.url}/two-posts")
    bars = page.locator("emoji-reactions")
    mine = bars.nth(0).locator("summary")
    expect(mine).to_be_hidden()  # a new reader has nothing to list: the bar keeps its height
    bars.nth(0).get_by_role("button", name=re.compile("^Happy")).click()
    # Counted before the next vote, so the list's order (the order of the votes) is known.
    wait_until(lambda: store.counts("demo", "first") == {"happy": 1})
    bars.nth(1).get_by_role("button", name=re.compile("^Sad")).click()
    wait_until(lambda: store.counts("demo", "second") == {"sad": 1})

    mine.focus()
    page.keyboard.press("Enter")
    items = bars.nth(0).locator("li")
    happy, sad = DEFAULT_REACTIONS[0].emoji, DEFAULT_REACTIONS[1].emoji
    expect(items).to_have_text([f"{happy} First post", f"{sad} Second post", "Take back all"])
    page.keyboard.press("Tab")
    expect(bars.nth(0).get_by_role("button", name="Take back all")).to_be_focused()
    page.keyboard.press("Enter")

    expect(items).to_have_text(["None"])
    for bar in range(2):
        expect(bars.nth(bar).get_by_role("button", name="Happy 0%")).to_be_visible()
        expect(bars.nth(bar).get_by_role("button", name="Sad 0%")).to_be_visible()
        assert bars.nth(bar).locator("[aria-pressed=true]").count() == 0
    assert store.counts("demo", "first") == store.counts("demo", "second") == {}
    assert page.errors == []


def test_choices_made_before_the_index_are_listed_and_erased_once_indexed(
    client, store, redis_client, redis_url, blog
):
    """A site upgraded from a version without the index: its readers' choices (kept in each
    article's readers hash) are found once `reactions sites index-readers` has run."""
    reader = store.reader_hash("blog", TOKEN)
    for article in ("first", "second"):
        vote(client, article, "happy")
        vote(client, article, "sad", token=OTHER_TOKEN)
    redis_client.delete(
        own_key("blog", reader), own_key("blog", store.reader_hash("blog", OTHER_TOKEN))
    )
    assert listed(me(client)) == set()

    runner = CliRunner(env={"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET})
    result = runner.invoke(main, ["sites", "index-readers", "blog"])

    assert result.exit_code == 0, result.output
    assert "4 earlier reactions" in result.output
    assert listed(me(client)) == {("first", "happy"), ("second", "happy")}
    assert listed(me(client, "DELETE")) == {("first", "happy"), ("second", "happy")}
    assert store.counts("blog", "first") == store.counts("blog", "second") == {"sad": 1}
    assert store.index_own_reactions("blog") == 0  # once is enough


def test_an_erase_reaches_the_open_streams_of_another_process(client, store, redis_url, blog):
    other = create_app({"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS)
    hub = other.extensions["reactions_live"]
    hub.start()
    try:
        wait_until(hub.connected.is_set)
        for article in ("first", "second"):
            vote(client, article, "happy")
            vote(client, article, "sad", token=OTHER_TOKEN)
        inboxes = {article: hub.open("blog", article) for article in ("first", "second")}

        me(client, "DELETE")

        for article, inbox in inboxes.items():
            # The votes' own events may come first: read on until the erase's.
            def erased(inbox=inbox, article=article):
                event = json.loads(inbox.get(timeout=5).split("data: ", 1)[1])
                counts = {r["id"]: r["count"] for r in event["reactions"] if r["count"]}
                return event["article"] == article and counts == {"sad": 1}

            wait_until(erased, timeout=5)
            hub.close("blog", article, inbox)
    finally:
        hub.stop()
