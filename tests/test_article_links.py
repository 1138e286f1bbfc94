"""An article's title and link, as the admin sees them, come from the site's own pages: a
voter cannot point them at a page of another origin, nor rename an article from elsewhere."""

from __future__ import annotations

import json

import pytest

from widget.store import Site

BLOG = "https://blog.example.com"
# A second origin the site allows (say, its comments app): its votes count, but it is not
# the article's page.
SISTER = "https://talk.example.net"
READER = "reader-token-aaaaaaaaaaaa"


@pytest.fixture
def blog(store):
    store.save_site(Site("blog", (BLOG, SISTER)))
    return "blog"


def vote(client, origin, reader=READER, reaction="happy", **extra):
    body = {"site": "blog", "article": "post-1", "reader": reader, "reaction": reaction}
    return client.post("/api/v1/reactions", json=body | extra, headers={"Origin": origin})


def meta(redis_client) -> dict | None:
    raw = redis_client.hget("rx:{blog}:meta", "post-1")
    return json.loads(raw) if raw else None


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.test/login",
        "https://blog.example.com.evil.test/post-1",
        "https://blog.example.com@evil.test/post-1",
        "https://blog.example.com:8443/post-1",  # another port is another origin
        "http://blog.example.com/post-1",  # and so is another scheme
        "https://blog%2eexample.com/post-1",
        "https://evil.test\\@blog.example.com/post-1",
        "HTTP://[",  # does not parse: found by the schema fuzzing as a 500
        "https://blog.example.com:99999/post-1",
    ],
)
def test_a_link_to_a_page_the_site_does_not_allow_is_not_kept(client, blog, redis_client, url):
    answer = vote(client, BLOG, url=url, title="Your account is locked")

    # The reader's vote counts; the link and its title never reach the admin.
    assert answer.status_code == 200 and answer.get_json()["counted"] is True
    assert redis_client.hgetall("rx:{blog}:a:post-1") == {"happy": "1"}
    assert meta(redis_client) is None or (
        meta(redis_client)["url"],
        meta(redis_client)["title"],
    ) == ("", "")


def test_the_first_vote_names_the_article_in_its_origin_s_spelling(client, blog, redis_client):
    answer = vote(client, BLOG, url="HTTPS://Blog.Example.com:443/post-1?p=1#comments", title="Hi")

    assert answer.status_code == 200
    # `first_seen` is the time; `n` the article's number for its readers' own index.
    assert meta(redis_client) | {"first_seen": 0} == {
        "url": "https://blog.example.com/post-1?p=1",
        "title": "Hi",
        "first_seen": 0,
        "n": 1,
    }


def test_another_allowed_origin_cannot_rename_or_relink_an_article(client, blog, redis_client):
    vote(client, BLOG, url=f"{BLOG}/post-1", title="Bread and butter")

    answer = vote(
        client, SISTER, reader="another-reader-bbbbbbbbb", url=f"{SISTER}/verify", title="Log in"
    )

    assert answer.status_code == 200 and answer.get_json()["counted"] is True
    assert answer.get_json()["total"] == 2
    assert (meta(redis_client)["url"], meta(redis_client)["title"]) == (
        f"{BLOG}/post-1",
        "Bread and butter",
    )


def test_the_article_s_own_page_renames_it(client, blog, redis_client):
    vote(client, BLOG, url=f"{BLOG}/post-1", title="Bread and butter")

    vote(client, BLOG, reaction="sad", url=f"{BLOG}/post-1/", title="Bread, butter and jam")

    assert (meta(redis_client)["url"], meta(redis_client)["title"]) == (
        f"{BLOG}/post-1/",
        "Bread, butter and jam",
    )


def test_an_article_without_a_title_or_link_gets_them_from_any_allowed_page(
    client, blog, redis_client
):
    vote(client, SISTER)  # a bar among several: no title, no link

    vote(client, SISTER, reaction="sad", url=f"{BLOG}/post-1", title="Bread and butter")

    assert (meta(redis_client)["url"], meta(redis_client)["title"]) == (
        f"{BLOG}/post-1",
        "Bread and butter",
    )


def test_a_demo_link_must_be_on_the_server_s_own_origin(client, redis_client):
    body = {"site": "demo", "article": "a", "reader": READER, "reaction": "happy"}
    own = {"url": "http://localhost/demo"}
    rebound = {"url": "http://evil.test:8801/demo"}
    headers = {"Origin": "http://localhost"}  # the test client's Host

    counted = client.post("/api/v1/reactions", json=body | rebound, headers=headers)
    assert counted.status_code == 200 and counted.get_json()["counted"] is True
    assert json.loads(redis_client.hget("rx:{demo}:meta", "a") or '{"url": ""}')["url"] == ""

    second = body | own | {"reader": "another-reader-bbbbbbbbb"}
    assert client.post("/api/v1/reactions", json=second, headers=headers).status_code == 200
    assert json.loads(redis_client.hget("rx:{demo}:meta", "a"))["url"] == "http://localhost/demo"
