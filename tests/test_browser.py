"""The widget in a real headless Chromium, as a reader and a site owner see it."""

import contextlib
import re

import pytest
from playwright.sync_api import expect

from tests.servers import BROWSER_UA, host_page, wait_until
from widget.store import Site

pytestmark = pytest.mark.usefixtures("redis_client")

LABELS = ["Happy", "Sad", "Excited", "Sleepy", "Angry", "Surprise"]


def bar_state(page, bar=0):
    """[(label, percent text, pressed)] of one bar, read through its open shadow root."""
    return page.evaluate(
        """(index) => [...document.querySelectorAll('emoji-reactions')[index]
               .shadowRoot.querySelectorAll('button')].map(b => [
                 b.querySelector('span').textContent, b.querySelector('small').textContent,
                 b.getAttribute('aria-pressed')])""",
        bar,
    )


def percents(page, bar=0):
    return [text for _, text, _ in bar_state(page, bar)]


def pressed(page, bar=0):
    return [label for label, _, is_pressed in bar_state(page, bar) if is_pressed == "true"]


def wait_for_bar(page, bar=0):
    page.wait_for_function(
        "(i) => { const b = document.querySelectorAll('emoji-reactions')[i];"
        " return b && b.shadowRoot && b.shadowRoot.querySelectorAll('button').length === 6; }",
        arg=bar,
    )


def wait_for_percents(page, expected, bar=0):
    page.wait_for_function(
        "([i, want]) => [...document.querySelectorAll('emoji-reactions')[i].shadowRoot"
        ".querySelectorAll('small')].map(p => p.textContent).join('|') === want",
        arg=[bar, "|".join(expected)],
    )


def button(page, label, bar=0):
    return (
        page.locator("emoji-reactions")
        .nth(bar)
        .get_by_role("button", name=re.compile(f"^{label} \\d+%$"))
    )


def test_a_reader_reacts_changes_undoes_and_reloads(page, live_server, client):
    page.goto(f"{live_server.url}/demo")
    wait_for_bar(page)
    assert [label for label, _, _ in bar_state(page)] == LABELS
    assert percents(page) == ["0%"] * 6
    assert pressed(page) == []

    button(page, "Happy").click()
    assert pressed(page) == ["Happy"]  # at once, before the server answered
    wait_for_percents(page, ["100%", "0%", "0%", "0%", "0%", "0%"])

    button(page, "Sad").click()
    wait_for_percents(page, ["0%", "100%", "0%", "0%", "0%", "0%"])
    assert pressed(page) == ["Sad"]

    button(page, "Sad").click()
    wait_for_percents(page, ["0%"] * 6)
    assert pressed(page) == []

    button(page, "Excited").click()
    wait_for_percents(page, ["0%", "0%", "100%", "0%", "0%", "0%"])
    page.wait_for_function(
        "() => fetch('/api/v1/reactions?site=demo&article=slow-mornings').then(r => r.json())"
        ".then(b => b.total === 1)"
    )

    page.reload()
    wait_for_bar(page)
    wait_for_percents(page, ["0%", "0%", "100%", "0%", "0%", "0%"])
    assert pressed(page) == ["Excited"]
    body = client.get("/api/v1/reactions?site=demo&article=slow-mornings").get_json()
    assert body["total"] == 1 and body["reactions"][2]["count"] == 1
    assert page.errors == []


def test_a_late_answer_to_an_earlier_click_never_undoes_a_newer_one(page, live_server, client):
    """A reader clicks Happy, then Sad before the server has answered: the answer to Happy,
    arriving after the click on Sad, must not show Happy again nor remember it (a reload
    before the answer to Sad showed no choice or the wrong one)."""
    held = []
    page.route(
        "**/api/v1/reactions",
        lambda route: held.append(route) if route.request.method == "POST" else route.fallback(),
    )
    page.goto(f"{live_server.url}/demo")
    wait_for_bar(page)
    button(page, "Happy").click()
    button(page, "Sad").click()
    assert pressed(page) == ["Sad"]

    with page.expect_request(lambda r: r.method == "POST"):  # the chained vote for Sad
        held[0].fulfill(response=held[0].fetch())  # the answer to Happy, late
    assert pressed(page) == ["Sad"]
    remembered = page.evaluate("() => JSON.parse(localStorage['emoji-reactions']).c")
    assert remembered == {"demo slow-mornings": "sad"}

    held[1].fulfill(response=held[1].fetch())
    wait_for_percents(page, ["0%", "100%", "0%", "0%", "0%", "0%"])
    page.reload()
    wait_for_bar(page)
    assert pressed(page) == ["Sad"]
    body = client.get("/api/v1/reactions?site=demo&article=slow-mornings").get_json()
    assert [r["count"] for r in body["reactions"]][:2] == [0, 1]


def test_two_readers_share_the_percentages(browser, live_server, client):
    for label in ("Happy", "Sad"):
        context = browser.new_context(user_agent=BROWSER_UA)
        page = context.new_page()
        page.goto(f"{live_server.url}/demo")
        wait_for_bar(page)
        button(page, label).click()
        page.wait_for_function(
            "(want) => fetch('/api/v1/reactions?site=demo&article=slow-mornings')"
            ".then(r => r.json()).then(b => b.total === want)",
            arg=1 if label == "Happy" else 2,
        )
        context.close()
    context = browser.new_context(user_agent=BROWSER_UA)
    page = context.new_page()
    page.goto(f"{live_server.url}/demo")
    wait_for_bar(page)
    wait_for_percents(page, ["50%", "50%", "0%", "0%", "0%", "0%"])
    context.close()


def test_an_index_page_has_one_bar_per_article_and_one_request(page, live_server, client):
    batches = []
    page.on(
        "request", lambda r: batches.append(r.url) if "/api/v1/reactions/batch" in r.url else None
    )
    page.goto(f"{live_server.url}/demo/blog")
    for bar in range(3):
        wait_for_bar(page, bar)
    assert len(batches) == 1

    button(page, "Sleepy", bar=1).click()
    wait_for_percents(page, ["0%", "0%", "0%", "100%", "0%", "0%"], bar=1)
    assert percents(page, 0) == ["0%"] * 6 and percents(page, 2) == ["0%"] * 6
    page.wait_for_function(
        "() => fetch('/api/v1/reactions?site=demo&article=tiny-gardens').then(r => r.json())"
        ".then(b => b.total === 1)"
    )
    assert client.get("/api/v1/reactions?site=demo&article=slow-mornings").get_json()["total"] == 0


def test_a_blog_on_another_origin_gets_its_counts_in_one_batch(browser, live_server, store):
    """The counts of every bar on a site owner's page come from one cross-origin batch GET,
    which the browser must be allowed to read: exactly one Access-Control-Allow-Origin."""
    demo = store.get_site("demo")
    store.set_reaction(demo, "first", store.reader_hash("demo", "reader-one-aaaaaaaaa"), "sad")
    store.set_reaction(demo, "second", store.reader_hash("demo", "reader-two-aaaaaaaaa"), "happy")
    html = (
        "<title>Another origin</title>"
        '<article><h1>First</h1><emoji-reactions data-article="first"></emoji-reactions></article>'
        '<article><h1>Second</h1><emoji-reactions data-article="second"></emoji-reactions>'
        f'</article><script src="{live_server.url}/embed.js" data-site="demo" data-live="off" '
        "async></script>"
    )
    context = browser.new_context(user_agent=BROWSER_UA)
    page = context.new_page()
    batches = []
    page.on("response", lambda r: "/reactions/batch" in r.url and batches.append(r))
    with host_page(html) as url:
        page.goto(url)
        wait_for_percents(page, ["0%", "100%", "0%", "0%", "0%", "0%"], bar=0)
        wait_for_percents(page, ["100%", "0%", "0%", "0%", "0%", "0%"], bar=1)
    assert len(batches) == 1
    sent = batches[0].headers_array()  # as sent: a repeated header is listed twice
    assert [h["value"] for h in sent if h["name"].lower() == "access-control-allow-origin"] == ["*"]
    context.close()


def test_keyboard_and_screen_reader(page, live_server):
    page.goto(f"{live_server.url}/demo")
    wait_for_bar(page)
    group = page.locator("emoji-reactions").get_by_role("group", name="Reactions")
    assert group.count() == 1
    happy = button(page, "Happy")
    # Named by what it shows (WCAG 2.5.3, label in name); the emoji is decoration.
    expect(happy).to_have_accessible_name("Happy 0%")
    assert happy.get_attribute("aria-label") is None
    happy.focus()
    page.keyboard.press("Enter")
    expect(happy).to_have_accessible_name("Happy 100%")
    assert happy.get_attribute("aria-pressed") == "true"
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    page.wait_for_function(
        "() => document.querySelector('emoji-reactions').shadowRoot.querySelectorAll('button')[1]"
        ".getAttribute('aria-pressed') === 'true'"
    )


def test_no_globals_no_cookies_no_csp_violations(page, context, live_server):
    page.add_init_script(
        "Object.defineProperty(document, '__before', {value: Object.getOwnPropertyNames(window)})"
    )
    page.goto(f"{live_server.url}/demo")
    wait_for_bar(page)
    button(page, "Angry").click()
    wait_for_percents(page, ["0%", "0%", "0%", "0%", "100%", "0%"])
    added = page.evaluate(
        "Object.getOwnPropertyNames(window).filter(k => !document.__before.includes(k))"
    )
    assert added == []
    assert context.cookies() == []
    stored = page.evaluate("JSON.parse(localStorage.getItem('emoji-reactions'))")
    assert len(stored["t"]) >= 16
    assert page.evaluate("document.querySelector('emoji-reactions').shadowRoot.mode") == "open"
    # The demo page runs under a strict CSP (no inline script or style): nothing was refused.
    assert page.errors == []


def test_server_down_leaves_a_quiet_note_and_the_page_intact(page, live_server):
    page.route("**/api/v1/**", lambda route: route.abort())
    page.goto(f"{live_server.url}/demo")
    page.wait_for_function(
        "() => document.querySelector('emoji-reactions').shadowRoot.textContent"
        ".includes('reactions unavailable')"
    )
    assert page.locator("h1").inner_text() == "The case for slow mornings"
    assert [e for e in page.errors if "net::" not in e] == []


def test_a_failed_vote_rolls_back_and_says_so(page, live_server):
    page.goto(f"{live_server.url}/demo")
    wait_for_bar(page)
    page.route("**/api/v1/reactions", lambda route: route.fulfill(status=503, body="{}"))
    button(page, "Happy").click()
    page.wait_for_function(
        "() => document.querySelector('emoji-reactions').shadowRoot.textContent"
        ".includes('reactions unavailable')"
    )
    assert pressed(page) == [] and percents(page) == ["0%"] * 6


def test_dark_mode_and_reduced_motion(browser, live_server):
    context = browser.new_context(
        color_scheme="dark", reduced_motion="reduce", user_agent=BROWSER_UA
    )
    page = context.new_page()
    page.goto(f"{live_server.url}/demo")
    wait_for_bar(page)
    style = page.evaluate(
        """() => { const b = document.querySelector('emoji-reactions').shadowRoot
             .querySelector('button'); const s = getComputedStyle(b);
             return [s.backgroundColor, getComputedStyle(b.firstChild).transitionDuration]; }"""
    )
    context.close()
    assert style == ["rgb(32, 33, 36)", "0s"]


def serve_host_page(page, live_server, html):
    """A site owner's theme on the server's own origin (allowed for site `blog`): every path
    under /blog/ answers `html` with the embed script pasted once at the end."""
    page.route(
        "**/blog/**",
        lambda route: route.fulfill(
            content_type="text/html",
            body=f"<title>Host</title>{html}"
            f'<script src="{live_server.url}/embed.js" data-site="blog" async></script>',
        ),
    )


def total(client, article, site="blog"):
    query = {"site": site, "article": article}
    return client.get("/api/v1/reactions", query_string=query).get_json()["total"]


@pytest.mark.parametrize(
    ("html", "bars_after"),
    [
        # A single post: one bar right after it.
        ("<main><article><h1>Post</h1></article><footer>f</footer></main>", ["ARTICLE"]),
        # Its comments are articles too: nested, as HTML's example has them, or WordPress's.
        (
            "<main><article><h1>Post</h1><p>Text</p><section><h2>Comments</h2>"
            "<article><p>First!</p></article><article><p>Nice</p></article>"
            "</section></article></main>",
            ["ARTICLE"],
        ),
        (
            "<main><article><h1>Post</h1></article><ol class='comment-list'><li class='comment'>"
            "<article class='comment-body'>First!</article></li><li class='comment'>"
            "<article class='comment-body'>Nice</article></li></ol></main>",
            ["ARTICLE"],
        ),
        # Home, category, search: a list of posts is no article to count.
        ("<main><article><h2>One</h2></article><article><h2>Two</h2></article></main>", []),
        # A page that is no article at all (contact, about): nothing to place it after.
        ("<main><h1>Contact</h1></main>", []),
        # The owner's own element works anywhere, here on a list.
        (
            "<main><article><h2>One</h2></article><article><h2>Two</h2>"
            '<emoji-reactions data-article="two"></emoji-reactions></article></main>',
            ["H2"],
        ),
    ],
    ids=[
        "one-article",
        "with-nested-comments",
        "with-wordpress-comments",
        "a-list",
        "no-article",
        "explicit-on-a-list",
    ],
)
def test_a_bar_is_placed_by_itself_only_on_a_page_that_is_one_article(
    page, live_server, store, html, bars_after
):
    store.save_site(Site("blog", (live_server.url,)))
    serve_host_page(page, live_server, html)
    page.goto(f"{live_server.url}/blog/post?utm_source=x#c")
    page.wait_for_function("() => customElements.get('emoji-reactions')")
    page.wait_for_load_state("load")
    placed = page.evaluate(
        "() => [...document.querySelectorAll('emoji-reactions')]"
        ".map(b => b.previousElementSibling.tagName)"
    )
    assert placed == bars_after


def test_a_placed_bar_counts_the_page_without_its_query_or_fragment(
    page, live_server, client, store
):
    store.save_site(Site("blog", (live_server.url,)))
    serve_host_page(page, live_server, "<article><h1>Post</h1></article>")
    page.goto(f"{live_server.url}/blog/post?utm_source=x#c")
    wait_for_bar(page)
    button(page, "Surprise").click()
    wait_until(lambda: total(client, f"{live_server.url}/blog/post") == 1)
    assert total(client, f"{live_server.url}/blog/post?utm_source=x") == 0


def test_plain_permalinks_count_each_post_apart(browser, live_server, client, store):
    """WordPress's plain permalinks: the canonical URL's query is the post."""
    store.save_site(Site("blog", (live_server.url,)))
    for post, label in (("1", "Happy"), ("2", "Sad")):
        context = browser.new_context(user_agent=BROWSER_UA)
        page = context.new_page()
        serve_host_page(
            page,
            live_server,
            f'<link rel="canonical" href="{live_server.url}/blog/?p={post}#top">'
            f"<article><h1>Post {post}</h1></article>",
        )
        page.goto(f"{live_server.url}/blog/?p={post}&utm_source=feed")
        wait_for_bar(page)
        button(page, label).click()
        wait_until(lambda post=post: total(client, f"{live_server.url}/blog/?p={post}") == 1)
        context.close()
    first = client.get(
        "/api/v1/reactions",
        query_string={"site": "blog", "article": f"{live_server.url}/blog/?p=1"},
    ).get_json()
    assert [r["count"] for r in first["reactions"]] == [1, 0, 0, 0, 0, 0]
    assert total(client, f"{live_server.url}/blog/") == 0


@contextlib.contextmanager
def a_reaction_from_another_origin(browser, live_server, store, allowed: bool):
    """A reader clicks Happy on a page on another origin, which site `blog` allows or not:
    yields the page, its origin and the console's warnings."""
    html = (
        '<article><h1>Post</h1><emoji-reactions data-article="elsewhere"></emoji-reactions>'
        f'</article><script src="{live_server.url}/embed.js" data-site="blog" async></script>'
    )
    context = browser.new_context(user_agent=BROWSER_UA)
    page = context.new_page()
    warnings = []
    page.on("console", lambda m: m.type == "warning" and warnings.append(m.text))
    try:
        with host_page(html) as url:
            origin = url.rstrip("/")
            store.save_site(Site("blog", (origin if allowed else "https://blog.example",)))
            page.goto(url)
            wait_for_bar(page)
            button(page, "Happy").click()
            yield page, origin, warnings
    finally:
        context.close()


def test_a_page_on_an_origin_the_site_does_not_allow_says_so(
    browser, live_server, store, redis_client
):
    with a_reaction_from_another_origin(browser, live_server, store, allowed=False) as seen:
        page, origin, warnings = seen
        status = page.locator("emoji-reactions").get_by_role("status")
        expect(status).to_have_text(f"reactions are not allowed on {origin.split('//')[1]}")
        assert pressed(page) == [] and percents(page) == ["0%"] * 6
        wait_until(lambda: warnings)
    assert f"origin {origin} is not allowed for site 'blog'" in warnings[0]
    assert f"reactions sites origins add blog {origin}" in warnings[0]
    assert list(redis_client.scan_iter("rx:{blog}:*")) == []  # not one key of the site


def test_a_page_on_an_allowed_origin_counts(browser, live_server, client, store, redis_client):
    with a_reaction_from_another_origin(browser, live_server, store, allowed=True) as seen:
        page, _, warnings = seen
        wait_for_percents(page, ["100%", "0%", "0%", "0%", "0%", "0%"])
        wait_until(lambda: total(client, "elsewhere") == 1)
    assert warnings == []
    assert list(redis_client.scan_iter("rx:{blog}:*")) != []


def open_demo(browser, url):
    context = browser.new_context(user_agent=BROWSER_UA)
    page = context.new_page()
    page.goto(url)
    wait_for_bar(page)
    return context, page


def test_a_reaction_reaches_another_readers_bar_live(browser, live_server):
    watcher_context = browser.new_context(user_agent=BROWSER_UA)
    watcher = watcher_context.new_page()
    with watcher.expect_request("**/api/v1/stream?*"):
        watcher.goto(f"{live_server.url}/demo")
    wait_for_bar(watcher)
    reader_context, reader = open_demo(browser, f"{live_server.url}/demo")
    try:
        button(reader, "Surprise").click()
        # No reload, no click on the watcher's side: the stream brings the new numbers.
        wait_for_percents(watcher, ["0%", "0%", "0%", "0%", "0%", "100%"])
        button(reader, "Surprise").click()
        wait_for_percents(watcher, ["0%"] * 6)
    finally:
        reader_context.close()
        watcher_context.close()


def test_polling_with_etags_when_streams_are_not_used(browser, live_server, store, caplog):
    caplog.set_level("INFO", logger="werkzeug")
    html = (
        "<title>Polling host</title><article><h1>Post</h1></article>"
        '<emoji-reactions data-article="polled"></emoji-reactions>'
        f'<script src="{live_server.url}/embed.js" data-site="demo" data-live="poll" '
        'data-poll="2" async></script>'
    )

    def polls():
        return [
            line.rsplit(" ", 2)[-2]
            for line in caplog.messages
            if "GET /api/v1/reactions?site=demo&article=polled" in line
        ]

    context = browser.new_context(user_agent=BROWSER_UA)
    page = context.new_page()  # no page.route here: routing turns the HTTP cache off
    with host_page(html) as url:
        page.goto(url)
        wait_for_bar(page)
        demo = store.get_site("demo")
        store.set_reaction(demo, "polled", store.reader_hash("demo", "another-reader-token"), "sad")
        wait_for_percents(page, ["0%", "100%", "0%", "0%", "0%", "0%"])
        # Unchanged counts are revalidated with If-None-Match and answered 304, not resent.
        wait_until(lambda: "304" in polls(), timeout=15)
    assert not any("/api/v1/stream" in line for line in caplog.messages)
    context.close()
