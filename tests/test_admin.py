"""The admin pages: login, CSRF, escaping, statistics and export against a real Redis."""

import csv
import io
import json
import random
import re
from collections import Counter, defaultdict

import pytest
from click.testing import CliRunner

from tests.servers import admin_app
from widget import create_app
from widget.cli import main
from widget.store import (
    DAY_RETENTION_SECONDS,
    FOLD_AT,
    Site,
    day_key,
    day_total_key,
    index_key,
    pending_key,
    stats_key,
    utc_day,
)

PASSWORD = "correct horse battery"
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "</textarea><svg onload=alert(1)>",
    "{{ 7*7 }}",
]


@pytest.fixture
def app(redis_url, redis_client):
    app = admin_app(redis_url, PASSWORD)
    yield app
    app.extensions["reactions_live"].stop()  # or it hears every later test's votes


def token(client, path="/admin/login"):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def log_in(client, password=PASSWORD):
    return client.post("/admin/login", data={"password": password, "csrf_token": token(client)})


@pytest.fixture
def admin(client):
    assert log_in(client).status_code == 302
    return client


def vote(store, article, reader, reaction, site="demo", **meta):
    site_record = store.get_site(site)
    store.set_reaction(site_record, article, store.reader_hash(site, reader), reaction, **meta)


GET_ROUTES = [
    "/admin/",
    "/admin/sites/demo",
    "/admin/sites/demo?sort=happy&days=90&page=2",
    "/admin/sites/demo/article?id=a",
    "/admin/sites/demo/reactions",
    "/admin/sites/demo/export.csv",
    "/admin/sites/demo/export.json",
    "/admin/sites/demo/export.csv?series=daily",
]
POST_ROUTES = [
    "/admin/sites",
    "/admin/sites/demo/origins",
    "/admin/sites/demo/reactions",
    "/admin/sites/demo/article/reset",
    "/admin/logout",
]


@pytest.mark.parametrize("path", GET_ROUTES)
def test_every_page_and_export_needs_the_login(client, store, path):
    vote(store, "a", "reader-1", "happy", title="Secret title")
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    assert b"Secret title" not in response.data and b"article,title" not in response.data


@pytest.mark.parametrize("path", POST_ROUTES)
def test_every_form_needs_the_login(client, redis_client, path):
    before = redis_client.hgetall("rx:sites")
    response = client.post(
        path, data={"name": "x", "origins": "https://x.org", "id": "a", "confirm": "yes"}
    )
    assert response.status_code == 401
    assert redis_client.hgetall("rx:sites") == before


def test_login_sets_a_strict_http_only_cookie(client):
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert "Secure" not in cookie
    assert client.get("/admin/").status_code == 200


def test_the_cookie_is_secure_over_https(app):
    client = app.test_client()
    page = client.get("/admin/login", base_url="https://localhost").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/admin/login",
        data={"password": PASSWORD, "csrf_token": csrf},
        base_url="https://localhost",
    )
    assert "Secure" in response.headers["Set-Cookie"]


def test_logout_ends_the_session(admin):
    response = admin.post("/admin/logout", data={"csrf_token": token(admin, "/admin/")})
    assert response.status_code == 302
    assert admin.get("/admin/").status_code == 302


def copy_of_the_cookie(app, admin):
    """Another browser holding a copy of the admin's cookie, as one who stole it would."""
    cookie = admin.get_cookie("reactions_admin", path="/admin")
    other = app.test_client()
    other.set_cookie(cookie.key, cookie.value, path="/admin")
    return other


def log_out(admin) -> None:
    response = admin.post("/admin/logout", data={"csrf_token": token(admin, "/admin/")})
    assert response.status_code == 302


def set_new_password(redis_url: str) -> None:
    result = CliRunner(env={"REDIS_URL": redis_url}).invoke(
        main, ["admin", "set-password", "--password", "a brand new password"]
    )
    assert result.exit_code == 0, result.output
    assert "open logins ended" in result.output


@pytest.mark.parametrize("end", ["logout", "new password", "new REACTIONS_ADMIN_PASSWORD"])
def test_ending_a_login_closes_every_copy_of_its_cookie(app, admin, redis_url, end):
    copy = copy_of_the_cookie(app, admin)
    second_browser = app.test_client()
    assert log_in(second_browser).status_code == 302
    assert copy.get("/admin/").status_code == 200  # the copy opened the admin until now
    restarted = None

    if end == "logout":
        log_out(admin)
        ended = [admin, copy]
    elif end == "new password":
        set_new_password(redis_url)
        ended = [admin, copy, second_browser]
    else:  # the server restarted with another password in the variable
        restarted = admin_app(redis_url, "another password 123")
        ended = [copy_of_the_cookie(restarted, browser) for browser in (admin, second_browser)]

    try:
        for browser in ended:
            kept_a_cookie = browser.get_cookie("reactions_admin", path="/admin") is not None
            response = browser.get("/admin/sites/demo/export.csv")
            assert response.status_code == 302
            assert response.headers["Location"].startswith("/admin/login")
            if kept_a_cookie:  # a copy, or a browser that did not log out: the answer deletes it
                assert "reactions_admin=;" in response.headers.get("Set-Cookie", "")
            assert browser.post("/admin/sites", data={"name": "x"}).status_code == 401
        if end == "logout":  # the other browser's own login goes on
            assert second_browser.get("/admin/").status_code == 200
    finally:
        if restarted:
            restarted.extensions["reactions_live"].stop()


def test_wrong_passwords_are_counted_then_refused(client, redis_client):
    for _ in range(5):
        response = log_in(client, "wrong")
        assert response.status_code == 401 and b"Wrong password" in response.data
    assert int(redis_client.hget("rx:admin", "failed_logins")) == 5
    locked = log_in(client)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert client.get("/admin/").status_code == 302
    # The counter is keyed by a salted hash, never by the raw address.
    keys = redis_client.keys("rx:admin:fail:*")
    assert len(keys) == 1 and "127.0.0.1" not in keys[0]


def test_login_never_redirects_off_site(client):
    csrf = token(client)
    response = client.post(
        "/admin/login?next=//evil.example/admin", data={"password": PASSWORD, "csrf_token": csrf}
    )
    assert response.headers["Location"] == "/admin/"


def test_a_stored_password_hash_works_without_the_variable(redis_server, redis_client):
    from click.testing import CliRunner

    from widget.cli import main

    result = CliRunner(env={"REDIS_URL": redis_server.url}).invoke(
        main, ["admin", "set-password"], input="a long password\na long password\n"
    )
    assert result.exit_code == 0, result.output
    stored = redis_client.hget("rx:admin", "password")
    assert stored and "a long password" not in stored
    app = create_app({"REDIS_URL": redis_server.url, "REACTIONS_LOGIN_DELAY": 0})
    client = app.test_client()
    assert log_in(client, "wrong password").status_code == 401
    assert log_in(client, "a long password").status_code == 302


@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
def test_forms_refuse_a_missing_or_wrong_csrf_token(admin, redis_client, csrf):
    data = {"name": "blog", "origins": "https://blog.example.com"}
    if csrf is not None:
        data["csrf_token"] = csrf
    response = admin.post("/admin/sites", data=data)
    assert response.status_code == 400
    assert not redis_client.hexists("rx:sites", "blog")


def test_admin_pages_send_security_headers(admin):
    response = admin.get("/admin/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert b"<script" not in response.data


def test_hostile_strings_render_as_text(admin, store):
    for number, text in enumerate(HOSTILE):
        vote(store, text, f"reader-{number}", "happy", title=text, url="https://x.org/?q=" + text)
    pages = [admin.get("/admin/sites/demo").get_data(as_text=True)]
    for text in HOSTILE:
        pages.append(
            admin.get("/admin/sites/demo/article", query_string={"id": text}).get_data(as_text=True)
        )
    for page in pages:
        assert "<script>alert" not in page
        assert "<img src=x" not in page and "<svg onload" not in page
    # The template text shows as typed, never evaluated (a "49" may occur by chance, in a
    # random CSRF token, say: only the literal's presence tells).
    assert ">{{ 7*7 }}</a>" in pages[0]  # the title, in the site's list of articles
    assert "<h1>{{ 7*7 }}</h1>" in pages[1 + HOSTILE.index("{{ 7*7 }}")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    # A title that is not an http(s) URL is never turned into a link.
    assert 'href="javascript:' not in "".join(pages)


def test_sites_page_lists_totals_and_the_snippet(admin, store):
    store.save_site(Site("blog", ("https://blog.example.com",)))
    vote(store, "p1", "r1", "happy", site="blog")
    vote(store, "p2", "r2", "sad", site="blog")
    page = admin.get("/admin/").get_data(as_text=True)
    row = page[page.index('href="/admin/sites/blog"') :]
    assert re.search(r'<td class="num">2</td>\s*<td class="num">2</td>', row)
    assert "https://blog.example.com" in row
    assert (
        "&lt;script src=&#34;http://localhost/embed.js&#34; data-site=&#34;blog&#34; async&gt;"
        in page
    )


def test_add_a_site_and_edit_its_origins(admin, store):
    csrf = token(admin, "/admin/")
    response = admin.post(
        "/admin/sites",
        data={
            "name": "news",
            "origins": "https://news.example\nhttps://www.news.example",
            "csrf_token": csrf,
        },
    )
    assert response.status_code == 302
    assert store.get_site("news").origins == ("https://news.example", "https://www.news.example")
    admin.post(
        "/admin/sites/news/origins", data={"origins": "https://new.example", "csrf_token": csrf}
    )
    assert store.get_site("news").origins == ("https://new.example",)
    again = admin.post(
        "/admin/sites", data={"name": "news", "origins": "https://x.example", "csrf_token": csrf}
    )
    assert again.status_code == 400
    bad = admin.post("/admin/sites/news/origins", data={"origins": "not a url", "csrf_token": csrf})
    assert bad.status_code == 400 and b"must look like" in bad.data
    assert store.get_site("news").origins == ("https://new.example",)


def test_site_page_ranks_sorts_searches_and_pages(admin, store):
    for number in range(120):
        for reader in range(1 + number % 7):
            vote(
                store,
                f"post-{number:03d}",
                f"r{reader}",
                "happy" if reader % 2 else "sad",
                title=f"Title {number}",
            )
    page = admin.get("/admin/sites/demo").get_data(as_text=True)
    assert "Page 1 of 3 (120 articles)" in page
    first_rows = re.findall(r"article\?id=(post-\d+)", page)
    assert len(first_rows) == 50
    assert first_rows[0] in {f"post-{n:03d}" for n in range(6, 120, 7)}  # 7 reactions each
    assert '<svg viewBox="0 0 720 200" role="img"' in page
    third = admin.get("/admin/sites/demo?page=3").get_data(as_text=True)
    assert len(re.findall(r"article\?id=(post-\d+)", third)) == 20
    by_happy = admin.get("/admin/sites/demo?sort=happy").get_data(as_text=True)
    top = re.findall(r"article\?id=(post-\d+)", by_happy)[0]
    assert int(top[-3:]) % 7 in (5, 6)  # 3 happy readers, the most any article has
    found = admin.get("/admin/sites/demo?q=title 11").get_data(as_text=True)
    assert sorted(set(re.findall(r'article\?id=(post-\d+)', found))) == [
        "post-011", "post-110", "post-111", "post-112", "post-113", "post-114", "post-115",
        "post-116", "post-117", "post-118", "post-119",
    ]  # fmt: skip


def test_the_statistics_take_votes_in_batches_and_are_exact_whenever_read(store, redis_client):
    """Votes reach the indexes, totals and day buckets through the site's pending list, folded
    by a vote when FOLD_AT wait and before every read: checked against a model of what each
    vote adds, over changes, take-backs, a reset and midnight."""
    site = store.get_site("demo")
    reactions = [r.id for r in site.reactions]
    articles = ["a", "b", "c", "with space|and bar", "e"]
    rng = random.Random(7)
    choices: dict[tuple[str, str], str] = {}
    by_article, by_reaction = Counter(), defaultdict(Counter)
    days, day_totals = defaultdict(Counter), defaultdict(Counter)
    total, last = 0, None
    midnight = 1_790_035_200  # a UTC midnight
    seen_pending = set()

    def check_stats():
        (stats,) = store.site_stats([site])
        assert (stats.total, stats.last, stats.articles) == (total, last, len(by_article))

    def check_top():
        top = store.top_articles("demo", None, 0, 10)
        assert {a.article: a.total for a in top} == dict(by_article)
        ranked = redis_client.zrange(index_key("demo"), 0, -1, withscores=True)
        assert {a: int(n) for a, n in ranked} == dict(by_article)
        for reaction in reactions:
            ranked = redis_client.zrange(index_key("demo", reaction), 0, -1, withscores=True)
            assert {a: int(n) for a, n in ranked} == dict(by_reaction[reaction])

    def check_site_days():
        day_names = sorted(days)
        assert store.site_timeline("demo", day_names) == [dict(day_totals[d]) for d in day_names]

    def check_article_days():
        day_names = sorted(days)
        for article in articles:
            assert store.article_timeline("demo", article, reactions, day_names) == [
                {r: n for (a, r), n in days[d].items() if a == article and n} for d in day_names
            ]

    checks = [check_top, check_site_days, check_article_days, check_stats]

    def check_reads(first):
        """Every read folds for itself: each checkpoint starts with another one."""
        for check in [checks[first], *checks]:
            check()

    for step in range(450):
        now = midnight - 300 + step  # the first 300 votes the day before
        article, reader = rng.choice(articles), f"reader-{rng.randrange(12)}"
        wanted = rng.choice([*reactions, None])
        if step == 250:  # an admin's reset, with votes on the article pending
            pending = redis_client.lrange(pending_key("demo"), 0, -1)
            article = pending[-1].split(" ", 4)[4]  # `time day previous wanted article`
            total -= sum(1 for (a, _), c in choices.items() if a == article and c)
            choices = {k: c for k, c in choices.items() if k[0] != article}
            store.reset_article(site, article)
            by_article[article] = 0
            for counter in by_reaction.values():
                counter.pop(article, None)
            continue
        previous = choices.get((article, reader))
        store.set_reaction(site, article, reader, wanted, now=now)
        if previous != wanted:
            choices[(article, reader)] = wanted
            delta = (wanted is not None) - (previous is not None)
            by_article[article] += delta
            total += delta
            last = float(now)
            if previous:
                by_reaction[previous][article] -= 1
            if wanted:
                by_reaction[wanted][article] += 1
                days[utc_day(now)][(article, wanted)] += 1
                day_totals[utc_day(now)][wanted] += 1
        waiting = redis_client.llen(pending_key("demo"))
        assert waiting < FOLD_AT  # the vote that made it FOLD_AT folded them
        seen_pending.add(waiting)
        if step in (120, 299, 333):
            check_reads((120, 299, 333).index(step))
            assert redis_client.llen(pending_key("demo")) == 0
    assert seen_pending >= {0, 1, FOLD_AT - 1}  # votes did wait, and votes folded
    check_reads(3)
    for day in days:
        for key in (day_key("demo", day), day_total_key("demo", day)):
            assert DAY_RETENTION_SECONDS - 60 < redis_client.ttl(key) <= DAY_RETENTION_SECONDS
    assert redis_client.hget(stats_key("demo"), "total") == str(total)


def test_a_foreign_line_in_the_pending_list_is_skipped(store, redis_client):
    """Anyone with access to Redis may push onto the list: the fold skips what the vote script
    did not write, and the votes around it still count."""
    vote(store, "a", "r1", "happy")
    redis_client.rpush(pending_key("demo"), "garbage", "")
    vote(store, "a", "r2", "sad")
    (stats,) = store.site_stats([store.get_site("demo")])
    assert (stats.total, stats.articles) == (2, 1)
    assert redis_client.llen(pending_key("demo")) == 0


def test_the_timeline_draws_todays_reactions(admin, store):
    vote(store, "a", "r1", "happy")
    vote(store, "a", "r2", "sad")
    page = admin.get("/admin/sites/demo/article?id=a").get_data(as_text=True)
    bars = re.findall(r'<rect class="s(\d)"[^>]*><title>([^<]+)</title>', page)
    assert any("1 Happy" in title for _, title in bars)
    assert any("1 Sad" in title for _, title in bars)
    assert "2 reactions" in page


def test_reset_needs_confirmation_then_empties_the_article(admin, store, client):
    vote(store, "a", "r1", "happy")
    vote(store, "a", "r2", "happy")
    vote(store, "b", "r1", "sad")
    csrf = token(admin, "/admin/sites/demo/article?id=a")
    refused = admin.post("/admin/sites/demo/article/reset", data={"id": "a", "csrf_token": csrf})
    assert refused.status_code == 400
    assert store.counts("demo", "a") == {"happy": 2}
    done = admin.post(
        "/admin/sites/demo/article/reset", data={"id": "a", "confirm": "yes", "csrf_token": csrf}
    )
    assert done.status_code == 302
    assert store.counts("demo", "a") == {}
    assert client.get("/api/v1/reactions?site=demo&article=a").get_json()["total"] == 0
    assert "Reset: 2 reactions removed." in admin.get(done.headers["Location"]).get_data(
        as_text=True
    )
    (stats,) = store.site_stats([store.get_site("demo")])
    assert stats.total == 1
    vote(store, "a", "r1", "happy")  # the reader may react again
    assert store.counts("demo", "a") == {"happy": 1}


def api_numbers(client, articles):
    numbers = {}
    for article in articles:
        body = client.get(
            "/api/v1/reactions", query_string={"site": "demo", "article": article}
        ).get_json()
        numbers[article] = {r["id"]: r["count"] for r in body["reactions"]} | {
            "total": body["total"]
        }
    return numbers


def test_exports_hold_the_numbers_the_api_gives(admin, store, client):
    articles = ["https://blog.example/one", "=HYPERLINK(1)", "three"]
    for number in range(30):
        vote(
            store,
            articles[number % 3],
            f"r{number}",
            ["happy", "sad", "surprise", "angry"][number % 4],
            title=f"T{number % 3}",
        )
    expected = api_numbers(client, articles)

    response = admin.get("/admin/sites/demo/export.csv")
    assert response.mimetype == "text/csv"
    assert re.match(
        r'attachment; filename="reactions-demo-\d{4}-\d\d-\d\d\.csv"',
        response.headers["Content-Disposition"],
    )
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    from_csv = {
        row["article"].removeprefix("'"): {
            k: int(v) for k, v in row.items() if k not in ("article", "title", "url")
        }
        for row in rows
    }
    assert from_csv == expected
    assert any(row["article"] == "'=HYPERLINK(1)" for row in rows)  # no formula injection

    body = json.loads(admin.get("/admin/sites/demo/export.json").get_data(as_text=True))
    from_json = {a["article"]: a["counts"] | {"total": a["total"]} for a in body["articles"]}
    assert from_json == expected
    assert sum(sum(day["counts"].values()) for day in body["daily"]) == 30

    daily = list(
        csv.DictReader(
            io.StringIO(
                admin.get("/admin/sites/demo/export.csv?series=daily").get_data(as_text=True)
            )
        )
    )
    assert len(daily) == 90 and sum(int(row["total"]) for row in daily) == 30


# Text a spreadsheet would run as a formula in a cell of its own or once it splits the cell
# at its separator (a comma, a semicolon, a tab, a line break).
FORMULAS = [
    "=1+1",
    "a;=1+1",
    'a,=HYPERLINK("https://evil.example")',
    "b;  -2+3",
    "x\t@SUM(A1)",
    "+cmd|' /C calc'!A0",
    "line\n=1+1",
    "\r=1",
    "-5",
]


def test_no_exported_cell_is_a_formula_whatever_the_separator(admin, store):
    for number, text in enumerate(FORMULAS):
        vote(store, f"{text} {number}", f"r{number}", "happy", title=text,
             url=f"https://x.org/?q=1,{text}")  # fmt: skip

    exported = admin.get("/admin/sites/demo/export.csv").get_data(as_text=True)

    assert exported.startswith('"article","title","url","happy",')  # text cells quoted
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert sorted(row["title"].replace("'", "") for row in rows) == sorted(
        text.replace("'", "") for text in FORMULAS
    )
    for row in rows:
        assert row["happy"] == "1"
        for cell in (row["article"], row["title"], row["url"]):
            for piece in re.split(r"[,;\t\r\n]", cell):
                assert piece.lstrip(" ")[:1] not in ("=", "+", "-", "@"), (cell, piece)


def test_reaction_set_changes_reach_the_widget_api(admin, store, client):
    vote(store, "a", "r1", "angry")
    csrf = token(admin, "/admin/sites/demo/reactions")
    form = {"csrf_token": csrf}
    for reaction in store.get_site("demo").reactions:
        form[f"emoji-{reaction.id}"] = reaction.emoji
        form[f"label-{reaction.id}"] = reaction.label
        if reaction.id != "angry":
            form[f"active-{reaction.id}"] = "on"
    form["label-happy"] = "Joyful"
    form.update({"new-id": "love", "new-emoji": "😍", "new-label": "Love"})
    assert admin.post("/admin/sites/demo/reactions", data=form).status_code == 302

    body = client.get("/api/v1/reactions?site=demo&article=a").get_json()
    ids = [r["id"] for r in body["reactions"]]
    assert ids == ["happy", "sad", "excited", "sleepy", "surprise", "love"]
    assert body["reactions"][0]["label"] == "Joyful" and body["total"] == 0
    assert store.counts("demo", "a") == {"angry": 1}  # history kept

    form["active-angry"] = "on"  # restore it
    form |= {"emoji-love": "😍", "label-love": "Love", "active-love": "on", "new-id": ""}
    admin.post("/admin/sites/demo/reactions", data=form)
    body = client.get("/api/v1/reactions?site=demo&article=a").get_json()
    assert "angry" in [r["id"] for r in body["reactions"]] and body["total"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"label-happy": ""},
        {"new-id": "Bad Id", "new-emoji": "x", "new-label": "x"},
        {"new-id": "sad", "new-emoji": "x", "new-label": "x"},
    ],
)
def test_bad_reaction_sets_are_refused(admin, store, change):
    csrf = token(admin, "/admin/sites/demo/reactions")
    form = {"csrf_token": csrf}
    for reaction in store.get_site("demo").reactions:
        form |= {
            f"emoji-{reaction.id}": reaction.emoji,
            f"label-{reaction.id}": reaction.label,
            f"active-{reaction.id}": "on",
        }
    response = admin.post("/admin/sites/demo/reactions", data=form | change)
    assert response.status_code == 400
    assert [r.label for r in store.get_site("demo").reactions][0] == "Happy"


def test_unknown_site_and_article_are_404(admin):
    assert admin.get("/admin/sites/nosuch").status_code == 404
    assert admin.get("/admin/sites/demo/article?id=never").status_code == 404


def test_search_finds_titles_with_slashes_quotes_and_accents(admin, store):
    vote(store, "p1", "r1", "happy", title='Either/or: "quotes" in Zürich')
    vote(store, "p2", "r2", "sad", title="Something else")
    for term in ("either/or", '"quotes"', "zürich", "ZÜRICH", "p1"):
        page = admin.get("/admin/sites/demo", query_string={"q": term}).get_data(as_text=True)
        assert "article?id=p1" in page and "article?id=p2" not in page, term


def reaction_set_form(admin, store, retire=(), **changes):
    """The reaction-set form as the admin finds it, with `retire` unticked and `changes`."""
    form = {"csrf_token": token(admin, "/admin/sites/demo/reactions")}
    site = store.get_site("demo")
    for reaction in site.all_reactions:
        form[f"emoji-{reaction.id}"] = reaction.emoji
        form[f"label-{reaction.id}"] = reaction.label
        if reaction in site.reactions and reaction.id not in retire:
            form[f"active-{reaction.id}"] = "on"
    return form | changes


def shown_totals(admin) -> dict[str, int]:
    """Every total of the demo site the admin can read or download."""
    sites = admin.get("/admin/").get_data(as_text=True)
    row = sites[sites.index('href="/admin/sites/demo"') :]
    site = admin.get("/admin/sites/demo").get_data(as_text=True)
    rows = site[site.index('<table class="articles">') :]
    articles = re.findall(r'article\?id=([^"]+)"', rows)
    article_pages = [
        admin.get("/admin/sites/demo/article", query_string={"id": a}).get_data(as_text=True)
        for a in articles
    ]
    exported = list(
        csv.DictReader(
            io.StringIO(admin.get("/admin/sites/demo/export.csv").get_data(as_text=True))
        )
    )
    body = json.loads(admin.get("/admin/sites/demo/export.json").get_data(as_text=True))
    for line in exported:  # each row adds up
        reactions = [
            int(v) for k, v in line.items() if k not in ("article", "title", "url", "total")
        ]
        assert sum(reactions) == int(line["total"])
    for article in body["articles"]:
        assert sum(article["counts"].values()) == article["total"]
    return {
        "sites page": int(re.search(r'<td class="num">(\d+)</td>', row).group(1)),
        "site page header": int(re.search(r"(\d+) reactions on \d+ articles", site).group(1)),
        "site page rows": sum(
            int(n) for n in re.findall(r'</th>\s*<td class="num">(\d+)</td>', rows)
        ),
        "article pages": sum(
            int(re.search(r"Breakdown · (\d+) reactions", page).group(1)) for page in article_pages
        ),
        "CSV": sum(int(line["total"]) for line in exported),
        "JSON": sum(article["total"] for article in body["articles"]),
    }


def test_a_retired_reactions_votes_count_in_every_total_shown_and_exported(admin, store):
    vote(store, "a", "r1", "angry")
    vote(store, "a", "r2", "angry")
    vote(store, "a", "r3", "happy")
    vote(store, "b", "r4", "angry")
    vote(store, "b", "r5", "sad")
    form = reaction_set_form(admin, store, retire=["angry"])
    assert admin.post("/admin/sites/demo/reactions", data=form).status_code == 302
    vote(store, "a", "r6", "happy")
    vote(store, "b", "r7", "sad")
    vote(store, "c", "r8", "excited")

    assert set(shown_totals(admin).values()) == {8}, shown_totals(admin)
    site = admin.get("/admin/sites/demo").get_data(as_text=True)
    assert "8 reactions over 30 days" in site  # the chart draws the retired votes too
    assert "those for retired reactions" in site and "(retired)" in site
    exported = admin.get("/admin/sites/demo/export.csv").get_data(as_text=True)
    assert {line["article"]: line["angry"] for line in csv.DictReader(io.StringIO(exported))} == {
        "a": "2",
        "b": "1",
        "c": "0",
    }
    body = json.loads(admin.get("/admin/sites/demo/export.json").get_data(as_text=True))
    assert [r["id"] for r in body["reactions"] if r["retired"]] == ["angry"]
    assert sum(sum(day["counts"].values()) for day in body["daily"]) == 8
    page = admin.get("/admin/sites/demo/reactions").get_data(as_text=True)
    assert "still count in the totals" in page

    # A reader who chose the retired reaction picks an offered one: the vote moves.
    vote(store, "a", "r1", "happy")
    assert set(shown_totals(admin).values()) == {8}, shown_totals(admin)
    assert store.counts("demo", "a") == {"angry": 1, "happy": 3}
