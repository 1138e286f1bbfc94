"""A site's named reaction sets through the API, the live streams, /me and the CLI, on the real
embedded Redis: a site offers its six-emotion bar and a compact like/dislike pair (`thumbs`),
each counted apart, one choice per reader per article per set."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import urllib.parse
import urllib.request

import pytest
from click.testing import CliRunner

from tests.servers import BROWSER_UA, NO_LIMITS, PATIENT_REDIS, SECRET, wait_until
from widget import create_app
from widget.cli import main
from widget.reactions import DEFAULT_REACTIONS, THUMBS_REACTIONS, Reaction
from widget.store import NamedSet, Site, Store, counts_key, scope

ORIGIN = "https://blog.example"
TOKEN = "reader-token-aaaaaaaaaaaa"
OTHER_TOKEN = "reader-token-bbbbbbbbbbbb"
THUMBS = NamedSet("thumbs", THUMBS_REACTIONS, "count")
STARS = NamedSet("stars", (Reaction("star", "\N{WHITE MEDIUM STAR}", "Star"),))


@pytest.fixture
def blog(store):
    return store.save_site(Site("blog", (ORIGIN,), sets=(THUMBS,)))


def vote(client, article, reaction, reaction_set=None, token=TOKEN, site="blog"):
    body = {"site": site, "article": article, "reader": token, "reaction": reaction}
    if reaction_set is not None:
        body["set"] = reaction_set
    response = client.post("/api/v1/reactions", json=body, headers={"Origin": ORIGIN})
    assert response.status_code == 200, response.json
    return response.json


def read(client, article, reaction_set=None, site="blog"):
    query = {"site": site, "article": article}
    if reaction_set is not None:
        query["set"] = reaction_set
    response = client.get("/api/v1/reactions?" + urllib.parse.urlencode(query))
    assert response.status_code == 200, response.json
    return response.json


def counts(body):
    return {r["id"]: r["count"] for r in body["reactions"]}


def test_a_named_set_answers_with_its_reactions_style_and_the_plain_site_name(client, blog):
    body = read(client, "post", "thumbs")
    assert body["site"] == "blog" and body["article"] == "post"
    assert (body["set"], body["style"]) == ("thumbs", "count")
    assert [(r["id"], r["emoji"], r["label"]) for r in body["reactions"]] == [
        tuple(r) for r in THUMBS_REACTIONS
    ]


@pytest.mark.parametrize("asked", [None, ""])
def test_the_default_sets_body_is_as_it_always_was(client, blog, asked):
    body = read(client, "post", asked)
    assert list(body) == ["site", "article", "total", "reactions"]
    assert [r["id"] for r in body["reactions"]] == [r.id for r in DEFAULT_REACTIONS]


@pytest.mark.parametrize(
    ("first", "second"),
    [(("like", "thumbs"), ("happy", None)), (("happy", ""), ("like", "thumbs"))],
)
def test_a_vote_in_one_set_never_touches_the_other(client, blog, first, second):
    (reaction, reaction_set), (other, other_set) = first, second
    answer = vote(client, "post", reaction, reaction_set)
    assert answer["mine"] == reaction and answer["counted"] is True
    assert counts(answer)[reaction] == 1
    assert read(client, "post", other_set)["total"] == 0
    # The same reader may hold a choice in each set at once.
    vote(client, "post", other, other_set)
    assert counts(read(client, "post", reaction_set))[reaction] == 1
    assert counts(read(client, "post", other_set))[other] == 1


def test_a_reader_has_one_choice_per_article_in_a_set_and_may_change_or_undo_it(client, blog):
    vote(client, "post", "like", "thumbs")
    changed = vote(client, "post", "dislike", "thumbs")
    assert counts(changed) == {"like": 0, "dislike": 1} and changed["set"] == "thumbs"
    vote(client, "post", "like", "thumbs", token=OTHER_TOKEN)
    undone = vote(client, "post", None, "thumbs")
    assert counts(undone) == {"like": 1, "dislike": 0} and undone["mine"] is None


def test_a_named_sets_counts_are_kept_in_its_own_keys(client, blog, redis_client):
    vote(client, "post", "like", "thumbs")
    assert redis_client.hgetall(counts_key(scope("blog", "thumbs"), "post")) == {"like": "1"}
    assert redis_client.exists(counts_key("blog", "post")) == 0


def test_a_vote_in_a_set_on_redis_cluster(redis_cluster):
    """On a cluster, a set's vote is one script in its site's slot, as the default set's."""
    app = create_app(
        {"REDIS_URL": redis_cluster.url, "REACTIONS_SECRET_KEY": SECRET, "TESTING": True}
        | NO_LIMITS
        | PATIENT_REDIS
    )
    try:
        store: Store = app.extensions["reactions"]
        store.save_site(Site("cluster-blog", (ORIGIN,), sets=(THUMBS,)))
        client = app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
        vote(client, "post", "happy", site="cluster-blog")
        answer = vote(client, "post", "like", "thumbs", site="cluster-blog")
        assert counts(answer) == {"like": 1, "dislike": 0}
        assert counts(read(client, "post", site="cluster-blog"))["happy"] == 1
        assert store.counts(scope("cluster-blog", "thumbs"), "post") == {"like": 1}
    finally:
        app.extensions["reactions_live"].stop()


def test_a_bot_is_answered_in_the_set_but_not_counted(client, blog):
    response = client.post(
        "/api/v1/reactions",
        json={"site": "blog", "set": "thumbs", "article": "p", "reader": TOKEN, "reaction": "like"},
        headers={"Origin": ORIGIN, "User-Agent": "curl/8.0"},
    )
    assert response.json["counted"] is False and response.json["set"] == "thumbs"
    assert read(client, "p", "thumbs")["total"] == 0


# Batch ------------------------------------------------------------------------------------


def test_one_batch_reads_the_default_and_named_sets_articles_keyed_as_asked(client, blog):
    tricky = "https://blog.example/a:b?x=1&set_article=thumbs:y"
    vote(client, "post", "happy")
    vote(client, tricky, "dislike", "thumbs")
    query = urllib.parse.urlencode(
        [
            ("site", "blog"),
            ("article", "post"),
            ("set_article", f"thumbs:{tricky}"),
            ("set_article", "thumbs:post"),
        ]
    )
    body = client.get(f"/api/v1/reactions/batch?{query}").json
    assert list(body["articles"]) == ["post"]
    assert counts(body["articles"]["post"])["happy"] == 1
    assert set(body["sets"]) == {"thumbs"}
    thumbs = body["sets"]["thumbs"]
    assert list(thumbs) == [tricky, "post"]
    assert counts(thumbs[tricky]) == {"like": 0, "dislike": 1}
    assert thumbs["post"]["total"] == 0 and thumbs["post"]["style"] == "count"


def test_a_batch_of_only_a_sets_articles_has_no_default_articles(client, blog):
    body = client.get("/api/v1/reactions/batch?site=blog&set_article=thumbs:one").json
    assert body["articles"] == {} and list(body["sets"]["thumbs"]) == ["one"]


def test_a_batch_without_sets_answers_as_it_always_did(client, blog):
    body = client.get("/api/v1/reactions/batch?site=blog&article=one").get_data()
    assert body.startswith(b'{"articles":{"one":{"site":"blog"') and b'"sets"' not in body


@pytest.mark.parametrize(("plain", "in_sets", "status"), [(25, 25, 200), (25, 26, 400)])
def test_the_batch_limit_counts_every_item_whatever_its_set(client, blog, plain, in_sets, status):
    query = "".join(f"&article=a{i}" for i in range(plain))
    query += "".join(f"&set_article=thumbs:t{i}" for i in range(in_sets))
    response = client.get(f"/api/v1/reactions/batch?site=blog{query}")
    assert response.status_code == status, response.json


# Bad input --------------------------------------------------------------------------------


@pytest.fixture
def shop(store):
    """Another site, which has a set the blog lacks."""
    return store.save_site(Site("shop", ("https://shop.example",), sets=(STARS,)))


BAD_SETS = [
    ("stars", "has no reaction set 'stars'"),  # the shop's, not the blog's
    ("nope", "has no reaction set 'nope'"),
    ("Thumbs", "lowercase letters"),
    ("a/b", "lowercase letters"),
    ("x" * 40, "longer than 32"),
]


@pytest.mark.parametrize(("name", "detail"), BAD_SETS)
@pytest.mark.parametrize("path", ["reactions", "reactions.svg", "stream"])
def test_a_read_of_a_set_the_site_lacks_is_a_400(client, blog, shop, path, name, detail):
    query = urllib.parse.urlencode({"site": "blog", "article": "p", "set": name})
    response = client.get(f"/api/v1/{path}?{query}")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_field" and detail in response.json["detail"]


@pytest.mark.parametrize(("name", "detail"), [*BAD_SETS, (5, "must be a string")])
def test_a_vote_in_a_set_the_site_lacks_is_a_400_and_counts_nothing(
    client, blog, shop, redis_client, name, detail
):
    response = client.post(
        "/api/v1/reactions",
        json={"site": "blog", "set": name, "article": "p", "reader": TOKEN, "reaction": "like"},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_field" and detail in response.json["detail"]
    assert not redis_client.keys("rx:{blog}:*a:*")


def test_a_vote_for_a_reaction_of_another_set_is_a_400(client, blog):
    response = client.post(
        "/api/v1/reactions",
        json={
            "site": "blog",
            "set": "thumbs",
            "article": "p",
            "reader": TOKEN,
            "reaction": "happy",
        },
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 400 and response.json["error"] == "invalid_field"


@pytest.mark.parametrize(
    ("item", "detail"),
    [
        ("stars:p", "has no reaction set 'stars'"),
        ("no-colon", "a set's name, ':' and an article id"),
        (":p", "a set's name, ':' and an article id"),
        ("Thumbs:p", "lowercase letters"),
        ("thumbs:", "article"),
    ],
)
def test_a_bad_batch_item_is_a_400(client, blog, shop, item, detail):
    query = urllib.parse.urlencode({"site": "blog", "article": "p", "set_article": item})
    response = client.get(f"/api/v1/reactions/batch?{query}")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_field" and detail in response.json["detail"]


# The image --------------------------------------------------------------------------------


def test_the_image_of_a_compact_set_shows_counts(client, blog):
    vote(client, "post", "like", "thumbs")
    vote(client, "post", "like", "thumbs", token=OTHER_TOKEN)
    image = client.get("/api/v1/reactions.svg?site=blog&article=post&set=thumbs")
    text = image.get_data(as_text=True)
    assert image.status_code == 200 and "Like 2, Dislike 0, 2 reactions" in text
    assert "%" not in text.split("</desc>")[1]


# Live -------------------------------------------------------------------------------------


@pytest.fixture
def thumbs_stream(live_server, blog):
    """A reader's open live stream of the article `post` in the thumbs set: its events, read
    on a thread until the test ends."""
    events: list[dict] = []
    parts = urllib.parse.urlsplit(live_server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    query = urllib.parse.urlencode({"site": "blog", "article": "post", "set": "thumbs"})
    connection.request("GET", f"/api/v1/stream?{query}", headers={"User-Agent": BROWSER_UA})
    stream = connection.sock  # the response takes it over
    answer = connection.getresponse()
    assert answer.status == 200

    def read():
        with contextlib.suppress(OSError):
            for raw in answer:
                if raw.startswith(b"data: "):
                    events.append(json.loads(raw[6:]))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    wait_until(lambda: len(events) == 1)
    yield events
    stream.shutdown(socket.SHUT_RDWR)  # the reader sees the stream end
    thread.join(timeout=10)
    answer.close()


def test_a_stream_of_a_set_gets_the_sets_votes_only(client, thumbs_stream):
    assert thumbs_stream[0]["set"] == "thumbs" and thumbs_stream[0]["total"] == 0
    vote(client, "post", "happy")  # the default set's: not this stream's
    vote(client, "post", "like", "thumbs")
    wait_until(lambda: len(thumbs_stream) >= 2)
    assert [counts(e) for e in thumbs_stream] == [
        {"like": 0, "dislike": 0},
        {"like": 1, "dislike": 0},
    ]
    assert thumbs_stream[1]["site"] == "blog" and thumbs_stream[1]["style"] == "count"


def test_a_change_of_the_sites_record_reaches_the_streams_of_its_sets(store, blog, thumbs_stream):
    hearts = NamedSet("thumbs", (Reaction("love", "\N{HEAVY BLACK HEART}", "Love"),), "percent")
    store.save_site(Site("blog", (ORIGIN,), sets=(hearts,)))
    wait_until(lambda: len(thumbs_stream) >= 2)
    assert [r["id"] for r in thumbs_stream[-1]["reactions"]] == ["love"]
    assert thumbs_stream[-1]["style"] == "percent"


# The reader's own reactions ---------------------------------------------------------------


def me(client, method="GET", query="", token=TOKEN):
    return client.open(
        f"/api/v1/me?site=blog{query}",
        method=method,
        headers={"Origin": ORIGIN, "X-Reader-Token": token},
    )


def own(response):
    assert response.status_code == 200, response.json
    return sorted((r["set"], r["article"], r["reaction"]) for r in response.json["reactions"])


def test_a_reader_sees_their_reactions_in_every_set_of_the_site(client, blog):
    vote(client, "post", "happy")
    vote(client, "post", "like", "thumbs")
    vote(client, "other", "dislike", "thumbs")
    vote(client, "post", "sad", token=OTHER_TOKEN)
    assert own(me(client)) == [
        ("", "post", "happy"),
        ("thumbs", "other", "dislike"),
        ("thumbs", "post", "like"),
    ]
    assert own(me(client, query="&set=thumbs")) == [
        ("thumbs", "other", "dislike"),
        ("thumbs", "post", "like"),
    ]


def test_a_reader_takes_back_every_reaction_in_every_set_at_once(client, blog):
    vote(client, "post", "happy")
    vote(client, "post", "like", "thumbs")
    vote(client, "post", "like", "thumbs", token=OTHER_TOKEN)
    assert own(me(client, "DELETE")) == [("", "post", "happy"), ("thumbs", "post", "like")]
    assert own(me(client)) == []
    assert read(client, "post")["total"] == 0
    assert counts(read(client, "post", "thumbs")) == {"like": 1, "dislike": 0}  # the other's


@pytest.mark.parametrize(
    ("query", "taken", "left"),
    [
        ("&article=post&set=thumbs", ("thumbs", "post", "like"), ("", "post", "happy")),
        ("&article=post", ("", "post", "happy"), ("thumbs", "post", "like")),
    ],
)
def test_a_reader_takes_back_one_articles_reaction_in_one_set(client, blog, query, taken, left):
    vote(client, "post", "happy")
    vote(client, "post", "like", "thumbs")
    assert own(me(client, "DELETE", query)) == [taken]
    assert own(me(client)) == [left]


def test_a_request_across_every_set_counts_once_against_the_own_data_limit(redis_url, redis_client):
    app = create_app(
        {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET, "TESTING": True}
        | NO_LIMITS
        | PATIENT_REDIS
        | {"REACTIONS_OWN_DATA_RATE_PER_MINUTE": 3}
    )
    try:
        app.extensions["reactions"].save_site(Site("blog", (ORIGIN,), sets=(THUMBS,)))
        client = app.test_client()
        statuses = [me(client).status_code for _ in range(3)] + [me(client, "DELETE").status_code]
        assert statuses == [200, 200, 200, 429]
    finally:
        app.extensions["reactions_live"].stop()


def test_me_of_a_set_the_site_lacks_is_a_400(client, blog, shop):
    response = me(client, "DELETE", "&set=stars")
    assert response.status_code == 400 and "no reaction set 'stars'" in response.json["detail"]


# The CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli(redis_url, redis_client):
    def run(*args):
        return CliRunner(env={"REDIS_URL": redis_url}).invoke(main, ["sites", *args])

    return run


def thumbs_status(client) -> int:
    return client.get("/api/v1/reactions?site=blog&article=post&set=thumbs").status_code


@pytest.fixture
def listening(app):
    """The app hears record changes as a server process does."""
    app.extensions["reactions_live"].start()
    wait_until(app.extensions["reactions_live"].connected.is_set)


def test_a_site_owner_adds_the_thumbs_set_and_sees_it_listed(cli, store):
    store.save_site(Site("blog", (ORIGIN,)))
    added = cli("sets", "add", "blog", "thumbs")
    assert added.exit_code == 0, added.output
    assert 'data-set="thumbs"' in added.output
    record = Store(store.client).get_site("blog").named_set("thumbs")
    assert (record.reactions, record.style) == (THUMBS_REACTIONS, "count")
    listed = cli("list")
    assert (
        "set thumbs (count): \N{THUMBS UP SIGN} like \N{THUMBS DOWN SIGN} dislike" in listed.output
    )


def test_a_site_owner_adds_a_set_of_their_own_reactions(cli, store):
    store.save_site(Site("blog", (ORIGIN,)))
    args = ["--reaction", "star:\N{WHITE MEDIUM STAR}:Star: five", "--reaction", "meh:😐:Meh"]
    added = cli("sets", "add", "blog", "stars", "--style", "percent", *args)
    assert added.exit_code == 0, added.output
    named = Store(store.client).get_site("blog").named_set("stars")
    assert [tuple(r) for r in named.reactions] == [
        ("star", "\N{WHITE MEDIUM STAR}", "Star: five"),
        ("meh", "😐", "Meh"),
    ]
    assert named.style == "percent"


def test_a_new_set_announces_the_record_to_every_process(cli, store, client, listening):
    """Saved as a site is: a running server answers for the new set at once."""
    store.save_site(Site("blog", (ORIGIN,)))
    assert thumbs_status(client) == 400
    assert cli("sets", "add", "blog", "thumbs").exit_code == 0
    wait_until(lambda: thumbs_status(client) == 200, timeout=2)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["add", "blog", "stars"], 2, "needs its reactions"),
        (["add", "nosuch", "thumbs"], 1, "no site 'nosuch'"),
        (["add", "blog", "Bad"], 2, "lowercase letters"),
        (["add", "blog", "stars", "--reaction", "star"], 2, "id:emoji:label"),
        (["add", "blog", "stars", "--reaction", "Star:x:y"], 2, "reaction id 'Star'"),
        (["add", "blog", "stars", "--reaction", "a:x:y", "--reaction", "a:z:w"], 2, "once"),
        (["add", "blog", "thumbs", "--style", "big"], 2, "big"),
        (["remove", "blog", "stars"], 1, "has no set 'stars'"),
    ],
)
def test_bad_set_commands_change_nothing(cli, store, args, code, message):
    store.save_site(Site("blog", (ORIGIN,)))
    result = cli("sets", *args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert Store(store.client).get_site("blog").sets == ()


def test_a_removed_set_keeps_its_counts(cli, client, blog, redis_client, listening):
    vote(client, "post", "like", "thumbs")
    removed = cli("sets", "remove", "blog", "thumbs")
    assert removed.exit_code == 0, removed.output
    assert "counts stay" in removed.output
    wait_until(lambda: thumbs_status(client) == 400, timeout=2)
    assert redis_client.hgetall(counts_key(scope("blog", "thumbs"), "post")) == {"like": "1"}
    assert cli("sets", "add", "blog", "thumbs").exit_code == 0
    wait_until(lambda: thumbs_status(client) == 200, timeout=2)
    assert read(client, "post", "thumbs")["total"] == 1


def test_an_articles_first_vote_in_each_set_counts_against_the_sites_new_articles_budget(
    redis_url, redis_client
):
    """A set keeps its own record of each article, so an article's first vote in a set is a
    new article for the site's hourly budget (which bounds the keys strangers can make),
    shared by all its sets, as docs/configuration.md says."""
    app = create_app(
        {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET}
        | NO_LIMITS
        | {"REACTIONS_NEW_ARTICLES_PER_HOUR": 2}
    )
    try:
        app.extensions["reactions"].save_site(Site("blog", (ORIGIN,), sets=(THUMBS,)))
        client = app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
        vote(client, "post", "happy")
        vote(client, "post", "like", "thumbs")
        vote(client, "post", "dislike", "thumbs", token=OTHER_TOKEN)  # not new: still counted
        body = {"site": "blog", "article": "another", "reader": TOKEN, "reaction": "like"}
        refused = client.post(
            "/api/v1/reactions", json=body | {"set": "thumbs"}, headers={"Origin": ORIGIN}
        )
        assert refused.status_code == 429, refused.json
        assert counts(read(client, "post", "thumbs")) == {"like": 1, "dislike": 1}
        assert read(client, "another", "thumbs")["total"] == 0
    finally:
        app.extensions["reactions_live"].stop()
