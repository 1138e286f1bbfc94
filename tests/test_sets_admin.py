"""A site owner's named reaction sets in the admin: each set's own pages, its editor, its
exports, and the like/dislike counts a WordPress import brings in, against a real Redis."""

import csv
import html as markup
import io
import json
import re
from dataclasses import replace

import pytest
from click.testing import CliRunner

from tests.servers import admin_app
from tests.test_wordpress import BLOG, FIELD_NOTES
from widget.cli import main
from widget.reactions import THUMBS_REACTIONS
from widget.store import SELF_ORIGIN, SITES_KEY, NamedSet, Site, scope

PASSWORD = "correct horse battery"
HOSTILE_LABEL = "<script>alert(1)</script>"


@pytest.fixture
def app(redis_url, redis_client):
    app = admin_app(redis_url, PASSWORD)
    yield app
    app.extensions["reactions_live"].stop()


@pytest.fixture(autouse=True)
def demo_without_sets(store):
    """The demo site as an owner starts: its built-in record offers a thumbs set (for the
    demo page), these stories begin with none."""
    store.save_site(Site("demo", (SELF_ORIGIN,)))


def token(client, path="/admin/login"):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


@pytest.fixture
def admin(client):
    response = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token(client)})
    assert response.status_code == 302
    return client


def record(redis_client, name="demo") -> Site:
    """The site's record as stored."""
    raw = redis_client.hget(SITES_KEY, name)
    return Site.from_json(name, raw) if raw else Site(name, ("self",))


def with_thumbs(store, style="count") -> Site:
    site = store.get_site("demo")
    return store.save_site(replace(site, sets=(NamedSet("thumbs", THUMBS_REACTIONS, style),)))


def vote(store, article, reader, reaction, set_name="", title=""):
    site = store.get_site("demo").for_set(set_name)
    store.set_reaction(site, article, store.reader_hash("demo", reader), reaction, title=title)


@pytest.fixture
def voted(store):
    """The demo site with a thumbs set, and votes in both sets: a and b in the default set,
    a and c in thumbs."""
    with_thumbs(store)
    vote(store, "a", "r1", "happy", title="Article A")
    vote(store, "a", "r2", "sad", title="Article A")
    vote(store, "b", "r1", "happy", title="Article B")
    for reader in ("r1", "r2"):
        vote(store, "a", reader, "like", "thumbs", title="Article A")
    vote(store, "a", "r3", "dislike", "thumbs", title="Article A")
    vote(store, "c", "r1", "like", "thumbs", title="Article C")
    return store


def page(admin, path, **query) -> str:
    response = admin.get(path, query_string=query)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def listed_articles(html: str) -> list[str]:
    return re.findall(r'article\?id=([^"&]+)', html[html.index('<table class="articles">') :])


# Each set's own pages ------------------------------------------------------------------


def test_each_set_shows_its_own_figures_only(admin, voted):
    thumbs = page(admin, "/admin/sites/demo", set="thumbs")
    default = page(admin, "/admin/sites/demo")

    assert "4 reactions on 2 articles" in thumbs and "3 reactions on 2 articles" in default
    assert listed_articles(thumbs) == ["a", "c"] and listed_articles(default) == ["a", "b"]
    assert "4 reactions over 30 days" in thumbs and "3 reactions over 30 days" in default
    assert ">Like</a>" in thumbs and ">Happy</a>" not in thumbs
    assert ">Happy</a>" in default and ">Like</a>" not in default
    # Each page links to the other set, and its own links stay in its set.
    assert 'href="/admin/sites/demo?set=thumbs"' in default
    assert 'href="/admin/sites/demo">Default</a>' in thumbs
    for link in ("article?id=a&amp;set=thumbs", "export.csv?set=thumbs", "export.json?set=thumbs"):
        assert link in thumbs, link
    assert 'data-set="thumbs"' in thumbs and 'data-set="thumbs"' not in default
    # The compact (count) set shows counts without percentages; the default set both.
    assert "<small>67%</small>" not in thumbs and "<small>50%</small>" in default
    sites = page(admin, "/admin/")
    assert 'href="/admin/sites/demo?set=thumbs">thumbs</a>' in sites


def test_a_sets_page_sorts_and_searches_within_the_set(admin, voted):
    by_dislike = page(admin, "/admin/sites/demo", set="thumbs", sort="dislike")
    found = page(admin, "/admin/sites/demo", set="thumbs", q="article")
    not_in_default = page(admin, "/admin/sites/demo", q="Article C")

    assert listed_articles(by_dislike)[0] == "a" and "Dislike ▾" in by_dislike
    assert sorted(listed_articles(found)) == ["a", "c"]
    assert "No articles match" in not_in_default


def test_an_articles_page_in_a_set_shows_that_sets_votes(admin, voted):
    thumbs = page(admin, "/admin/sites/demo/article", id="a", set="thumbs")
    default = page(admin, "/admin/sites/demo/article", id="a")

    assert "Breakdown · 3 reactions" in thumbs and "Breakdown · 2 reactions" in default
    assert "Like 67%" in thumbs and "Happy" not in thumbs
    assert 'href="/admin/sites/demo?set=thumbs"' in thumbs  # back to the set's page
    # Article c has votes in thumbs only.
    assert admin.get("/admin/sites/demo/article?id=c").status_code == 404
    assert admin.get("/admin/sites/demo/article?id=c&set=thumbs").status_code == 200


def test_a_reset_in_a_set_leaves_the_default_set_alone(admin, voted):
    form = {"csrf_token": token(admin, "/admin/"), "id": "a", "confirm": "yes"}

    done = admin.post("/admin/sites/demo/article/reset?set=thumbs", data=form)

    assert done.status_code == 302 and "set=thumbs" in done.headers["Location"]
    assert voted.counts(scope("demo", "thumbs"), "a") == {}
    assert voted.counts("demo", "a") == {"happy": 1, "sad": 1}


@pytest.mark.parametrize(
    "path",
    [
        "/admin/sites/demo?set=nosuch",
        "/admin/sites/demo?set=%3Cscript%3E",
        "/admin/sites/demo?set=Thumbs",
        "/admin/sites/demo/article?id=a&set=nosuch",
    ],
)
def test_an_unknown_set_is_not_found_as_an_unknown_site_is(admin, voted, path):
    response = admin.get(path)

    assert response.status_code == 404
    assert b"<script>" not in response.data


@pytest.mark.parametrize("export", ["export.csv", "export.json", "export.csv?series=daily"])
@pytest.mark.parametrize("set_name", ["nosuch", "<b>x</b>"])
def test_an_export_of_an_unknown_set_says_why_in_json(admin, voted, export, set_name):
    joiner = "&" if "?" in export else "?"
    response = admin.get(f"/admin/sites/demo/{export}{joiner}set={set_name}")

    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_field" and body["detail"]


# The editor ------------------------------------------------------------------------------


def set_form(admin, named: NamedSet, **changes) -> dict:
    """The form of a named set as the reactions page shows it, with `changes`."""
    html = page(admin, "/admin/sites/demo/reactions")
    assert f'id="set-{named.name}"' in html
    form = {"csrf_token": token(admin, "/admin/sites/demo/reactions"), "style": named.style}
    for reaction in named.all_reactions:
        form[f"emoji-{reaction.id}"] = reaction.emoji
        form[f"label-{reaction.id}"] = reaction.label
        if reaction in named.reactions:
            form[f"active-{reaction.id}"] = "on"
    return form | changes


def add_set(admin, **fields):
    form = {"csrf_token": token(admin, "/admin/sites/demo/reactions"), "preset": "thumbs"}
    return admin.post("/admin/sites/demo/sets", data=form | fields)


def test_an_admin_adds_a_like_dislike_set_and_it_is_counted_apart(admin, store, redis_client):
    response = add_set(admin, set="thumbs", style="count")

    assert response.status_code == 302
    assert response.headers["Location"].endswith(
        "/admin/sites/demo/reactions?saved=thumbs#set-thumbs"
    )
    assert record(redis_client).sets == (NamedSet("thumbs", THUMBS_REACTIONS, "count"),)
    vote(store, "a", "r1", "like", "thumbs")
    assert "1 reactions on 1 articles" in page(admin, "/admin/sites/demo", set="thumbs")
    assert "0 reactions on 0 articles" in page(admin, "/admin/sites/demo")


def test_a_set_can_start_as_a_copy_of_the_default_set(admin, store, redis_client):
    assert add_set(admin, set="second", preset="default", style="percent").status_code == 302

    (named,) = record(redis_client).sets
    assert named.reactions == store.get_site("demo").reactions and named.style == "percent"


def test_an_admin_edits_a_sets_reactions_and_style(admin, store, redis_client):
    with_thumbs(store)
    vote(store, "a", "r1", "dislike", "thumbs")
    named = record(redis_client).named_set("thumbs")
    form = set_form(admin, named, style="percent", **{"label-like": "Agree"})
    form.pop("active-dislike")  # retired: its vote is kept
    form |= {"new-id": "meh", "new-emoji": "\N{NEUTRAL FACE}", "new-label": "Meh"}

    response = admin.post("/admin/sites/demo/reactions?set=thumbs", data=form)

    assert response.status_code == 302
    edited = record(redis_client).named_set("thumbs")
    assert [(r.id, r.label) for r in edited.reactions] == [("like", "Agree"), ("meh", "Meh")]
    assert [r.id for r in edited.retired] == ["dislike"] and edited.style == "percent"
    assert record(redis_client).reactions == store.get_site("demo").reactions  # default kept
    html = page(admin, "/admin/sites/demo", set="thumbs")
    assert "1 reactions on 1 articles" in html and "(retired)" in html


def test_editing_the_default_set_or_the_origins_keeps_the_named_sets(admin, store, redis_client):
    with_thumbs(store)
    csrf = token(admin, "/admin/sites/demo/reactions")
    form = {"csrf_token": csrf}
    for reaction in store.get_site("demo").reactions:
        form |= {
            f"emoji-{reaction.id}": reaction.emoji,
            f"label-{reaction.id}": reaction.label.upper(),
            f"active-{reaction.id}": "on",
        }
    assert admin.post("/admin/sites/demo/reactions", data=form).status_code == 302
    origins = {"csrf_token": csrf, "origins": "self\nhttps://blog.example.com"}
    assert admin.post("/admin/sites/demo/origins", data=origins).status_code == 302

    saved = record(redis_client)
    assert saved.reactions[0].label == "HAPPY" and "https://blog.example.com" in saved.origins
    assert saved.sets == (NamedSet("thumbs", THUMBS_REACTIONS, "count"),)


def test_removing_a_set_keeps_its_counts_for_when_it_comes_back(admin, store, redis_client):
    with_thumbs(store)
    vote(store, "a", "r1", "like", "thumbs")
    csrf = token(admin, "/admin/sites/demo/reactions")

    unconfirmed = admin.post("/admin/sites/demo/sets/remove?set=thumbs", data={"csrf_token": csrf})
    removed = admin.post(
        "/admin/sites/demo/sets/remove?set=thumbs", data={"csrf_token": csrf, "confirm": "yes"}
    )

    assert unconfirmed.status_code == 400
    assert removed.status_code == 302 and record(redis_client).sets == ()
    assert "Set “thumbs” removed" in admin.get(removed.headers["Location"]).get_data(as_text=True)
    assert admin.get("/admin/sites/demo?set=thumbs").status_code == 404
    assert store.counts(scope("demo", "thumbs"), "a") == {"like": 1}  # kept in Redis
    assert add_set(admin, set="thumbs", style="count").status_code == 302
    assert "1 reactions on 1 articles" in page(admin, "/admin/sites/demo", set="thumbs")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"set": ""}, "give the new set a name"),
        ({"set": "Thumbs"}, "lowercase letters"),
        ({"set": "1up"}, "starting with a letter"),
        ({"set": "two words"}, "lowercase letters"),
        ({"set": "x" * 33}, "'set' is longer than 32 characters"),
        ({"set": "a/b"}, "lowercase letters"),
        ({"set": "<script>"}, "lowercase letters"),
        ({"set": "thumbs"}, "has a set 'thumbs' already"),
        ({"set": "votes", "preset": "everything"}, "starts with the like/dislike pair"),
        ({"set": "votes", "style": "stars"}, "style is one of percent, count"),
    ],
)
def test_the_editor_refuses_a_bad_set_with_a_message(admin, store, redis_client, fields, message):
    with_thumbs(store)
    before = redis_client.hget(SITES_KEY, "demo")

    response = add_set(admin, **fields)

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in markup.unescape(html) and 'role="alert"' in html and "<script>" not in html
    assert redis_client.hget(SITES_KEY, "demo") == before


def test_a_bad_edit_of_a_set_changes_nothing(admin, store, redis_client):
    with_thumbs(store)
    before = redis_client.hget(SITES_KEY, "demo")
    form = set_form(admin, record(redis_client).named_set("thumbs"))

    emptied = admin.post(
        "/admin/sites/demo/reactions?set=thumbs",
        data={k: v for k, v in form.items() if not k.startswith("active-")},
    )
    unknown = admin.post("/admin/sites/demo/reactions?set=nosuch", data=form)
    styled = admin.post("/admin/sites/demo/reactions?set=thumbs", data=form | {"style": "x"})

    assert emptied.status_code == 400 and "at least one offered reaction" in emptied.get_data(
        as_text=True
    )
    assert unknown.status_code == 404 and styled.status_code == 400
    assert redis_client.hget(SITES_KEY, "demo") == before


SET_FORMS = [
    ("/admin/sites/demo/sets", {"set": "votes", "preset": "thumbs", "style": "count"}),
    ("/admin/sites/demo/reactions?set=thumbs", {"emoji-like": "x", "label-like": "x"}),
    ("/admin/sites/demo/sets/remove?set=thumbs", {"confirm": "yes"}),
]


@pytest.mark.parametrize(("path", "fields"), SET_FORMS)
@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
def test_set_forms_refuse_a_missing_or_wrong_csrf_token(
    admin, store, redis_client, path, fields, csrf
):
    with_thumbs(store)
    before = redis_client.hget(SITES_KEY, "demo")

    response = admin.post(path, data=fields | ({} if csrf is None else {"csrf_token": csrf}))

    assert response.status_code == 400
    assert redis_client.hget(SITES_KEY, "demo") == before


@pytest.mark.parametrize(("path", "fields"), SET_FORMS)
def test_set_forms_need_the_login(client, store, redis_client, path, fields):
    with_thumbs(store)
    before = redis_client.hget(SITES_KEY, "demo")

    response = client.post(path, data=fields)

    assert response.status_code == 401
    assert redis_client.hget(SITES_KEY, "demo") == before


def test_a_hostile_label_in_a_set_is_shown_as_text(admin, store, redis_client):
    with_thumbs(store)
    vote(store, "a", "r1", "like", "thumbs", title="A")
    form = set_form(
        admin, record(redis_client).named_set("thumbs"), **{"label-like": HOSTILE_LABEL}
    )
    assert admin.post("/admin/sites/demo/reactions?set=thumbs", data=form).status_code == 302

    pages = [
        page(admin, "/admin/sites/demo", set="thumbs"),
        page(admin, "/admin/sites/demo/article", id="a", set="thumbs"),
        page(admin, "/admin/sites/demo/reactions"),
    ]

    for html in pages:
        assert HOSTILE_LABEL not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# Exports -------------------------------------------------------------------------------


def test_a_sets_exports_hold_its_numbers_and_say_its_set(admin, voted):
    response = admin.get("/admin/sites/demo/export.csv?set=thumbs")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    body = json.loads(admin.get("/admin/sites/demo/export.json?set=thumbs").get_data(as_text=True))
    daily = list(
        csv.DictReader(
            io.StringIO(
                admin.get("/admin/sites/demo/export.csv?set=thumbs&series=daily&days=30").get_data(
                    as_text=True
                )
            )
        )
    )

    assert re.fullmatch(
        r'attachment; filename="reactions-demo-thumbs-\d{4}-\d\d-\d\d\.csv"',
        response.headers["Content-Disposition"],
    )
    assert [(r["set"], r["article"], r["like"], r["dislike"], r["total"]) for r in rows] == [
        ("thumbs", "a", "2", "1", "3"),
        ("thumbs", "c", "1", "0", "1"),
    ]
    assert "happy" not in rows[0]
    assert (body["site"], body["set"], body["style"]) == ("demo", "thumbs", "count")
    assert [r["id"] for r in body["reactions"]] == ["like", "dislike"]
    assert {a["article"]: a["counts"] for a in body["articles"]} == {
        "a": {"like": 2, "dislike": 1},
        "c": {"like": 1, "dislike": 0},
    }
    assert sum(day["counts"]["like"] for day in body["daily"]) == 3
    assert len(daily) == 30 and {row["set"] for row in daily} == {"thumbs"}
    assert sum(int(row["total"]) for row in daily) == 4


def test_the_default_sets_exports_are_as_they_were(admin, voted):
    exported = admin.get("/admin/sites/demo/export.csv").get_data(as_text=True)
    body = json.loads(admin.get("/admin/sites/demo/export.json").get_data(as_text=True))

    assert exported.startswith('"article","title","url","happy",')
    assert {line["article"]: line["total"] for line in csv.DictReader(io.StringIO(exported))} == {
        "a": "2",
        "b": "1",
    }
    assert list(body) == ["site", "exported", "reactions", "articles", "daily"]


def test_the_export_command_writes_a_sets_file(admin, voted, redis_url, tmp_path):
    runner = CliRunner(env={"REDIS_URL": redis_url})
    as_csv, as_json = tmp_path / "thumbs.csv", tmp_path / "thumbs.json"

    results = [
        runner.invoke(main, ["export", "demo", "--set", "thumbs", "-o", str(as_csv)]),
        runner.invoke(
            main, ["export", "demo", "--set", "thumbs", "--format", "json", "-o", str(as_json)]
        ),
        runner.invoke(main, ["export", "demo", "--set", "thumbs", "--daily", "90"]),
    ]

    assert [r.exit_code for r in results] == [0, 0, 0], [r.output for r in results]
    # The admin's file, byte for byte (CSV lines end in CRLF, as the CSV standard has them).
    assert as_csv.read_bytes() == admin.get("/admin/sites/demo/export.csv?set=thumbs").data
    body = json.loads(as_json.read_text())
    assert body["set"] == "thumbs" and [a["total"] for a in body["articles"]] == [3, 1]
    daily = list(csv.DictReader(io.StringIO(results[2].output)))
    assert len(daily) == 90 and sum(int(row["total"]) for row in daily) == 4
    default = runner.invoke(main, ["export", "demo"])
    assert default.output.startswith('"article","title","url","happy",')


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["export", "demo", "--set", "nosuch"], 1, "site 'demo' has no reaction set 'nosuch'"),
        (["export", "nosuch"], 1, "no site 'nosuch'"),
        (["export", "demo", "--daily", "30", "--format", "json"], 2, "daily series is a CSV"),
    ],
)
def test_the_export_command_refuses_what_it_cannot_export(
    voted, redis_url, arguments, code, message
):
    result = CliRunner(env={"REDIS_URL": redis_url}).invoke(main, arguments)

    assert result.exit_code == code and message in result.output


# The WordPress import's like/dislike counts in the admin --------------------------------


def test_imported_likes_and_dislikes_show_under_thumbs(admin, redis_url):
    runner = CliRunner(env={"REDIS_URL": redis_url})
    runner.invoke(main, ["sites", "add", "blog", "--origin", BLOG])
    assert (
        runner.invoke(main, ["import", "wordpress", str(FIELD_NOTES), "--site", "blog"]).exit_code
        == 0
    )

    thumbs = page(admin, "/admin/sites/blog", set="thumbs")
    default = page(admin, "/admin/sites/blog")
    article = page(
        admin, "/admin/sites/blog/article", id=f"{BLOG}/2026/03/spring-walk/", set="thumbs"
    )

    assert "33 reactions on 4 articles" in thumbs and "183 reactions on 11 articles" in default
    assert "Notes from the lighthouse" in thumbs and "Notes from the lighthouse" not in default
    assert "Breakdown · 25 reactions" in article and "Like 92%" in article


def test_a_sets_pages_and_export_work_on_a_cluster(redis_cluster):
    """A set's keys share its site's slot: every page and export of it is one shard's."""
    app = admin_app(redis_cluster.url, PASSWORD)
    try:
        store = app.extensions["reactions"]
        with_thumbs(store)
        for number in range(3):
            vote(store, f"post-{number}", f"r{number}", "like", "thumbs", title=f"Post {number}")
        client = app.test_client()
        login = {"password": PASSWORD, "csrf_token": token(client)}
        assert client.post("/admin/login", data=login).status_code == 302

        for path in (
            "/admin/sites/demo?set=thumbs&q=post",
            "/admin/sites/demo/article?id=post-1&set=thumbs",
        ):
            assert client.get(path).status_code == 200, path
        assert "3 reactions on 3 articles" in page(client, "/admin/sites/demo", set="thumbs")
        rows = client.get("/admin/sites/demo/export.csv?set=thumbs").get_data(as_text=True)
        assert len(rows.splitlines()) == 4
    finally:
        app.extensions["reactions_live"].stop()
