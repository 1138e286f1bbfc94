"""The seed's two bars on one page in a real Chromium: the compact like/dislike pair (the demo
site's set `thumbs`) above the article and the six emotions below it, read in one batch,
counted apart, each keeping its reader's own choice."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.servers import BROWSER_UA, host_page, wait_until
from tests.test_accessibility_browser import violations
from widget.reactions import DEFAULT_REACTIONS, THUMBS_REACTIONS
from widget.store import NamedSet, Site, scope

pytestmark = pytest.mark.usefixtures("redis_client")

ARTICLE = "slow-mornings"
THUMBS = scope("demo", "thumbs")
LIKE, DISLIKE = (r.emoji for r in THUMBS_REACTIONS)
HAPPY = DEFAULT_REACTIONS[0].emoji
THUMBS_SET = NamedSet("thumbs", THUMBS_REACTIONS, "count")


@pytest.fixture
def bars(page, live_server):
    """The demo article with both bars, once both show their counts; the page's requests to
    the API are in `page.api`."""
    page.api = []
    page.on("request", lambda r: "/api/v1/" in r.url and page.api.append(r.url))
    page.goto(f"{live_server.url}/demo/thumbs")
    thumbs, emotions = (
        page.locator("emoji-reactions").nth(0),
        page.locator("emoji-reactions").nth(1),
    )
    expect(thumbs.get_by_role("button", name="Like 0", exact=True)).to_be_visible()
    expect(emotions.get_by_role("button", name="Happy 0%", exact=True)).to_be_visible()
    return thumbs, emotions


def figures(bar):
    """What each button of a bar shows: its emoji and its figure (count or percentage)."""
    return [
        (b.locator("b").text_content(), b.locator("small").text_content())
        for b in bar.get_by_role("button").all()
        if b.locator("b").count()
    ]


def test_both_bars_are_read_in_one_batch_and_the_pair_shows_counts(page, bars):
    thumbs, emotions = bars
    assert figures(thumbs) == [(LIKE, "0"), (DISLIKE, "0")]
    assert [figure for _, figure in figures(emotions)] == ["0%"] * 6
    batches = [url for url in page.api if "/reactions/batch?" in url]
    assert len(batches) == 1, page.api
    assert (
        "set_article=thumbs%3Aslow-mornings" in batches[0] and "article=slow-mornings" in batches[0]
    )
    assert not [url for url in page.api if "/api/v1/reactions?" in url]  # no read per bar
    # The compact bar is one small row; the bar of six keeps its rows of 66px.
    assert thumbs.bounding_box()["height"] <= 32
    assert emotions.bounding_box()["height"] >= 66
    assert page.errors == []


def test_a_like_never_changes_the_emotions_and_a_happy_never_changes_the_pair(page, bars, store):
    thumbs, emotions = bars
    thumbs.get_by_role("button", name="Like 0", exact=True).click()
    expect(thumbs.get_by_role("button", name="Like 1", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(emotions.get_by_role("button", pressed=True)).to_have_count(0)
    emotions.get_by_role("button", name="Happy 0%", exact=True).click()
    expect(emotions.get_by_role("button", name="Happy 100%", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(thumbs.get_by_role("button", name="Like 1", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(thumbs.get_by_role("button", name="Dislike 0", exact=True)).to_be_visible()
    wait_until(lambda: store.counts("demo", ARTICLE) == {"happy": 1})
    assert store.counts(THUMBS, ARTICLE) == {"like": 1}
    # Each bar keeps its own choice, by its set, for the next visit.
    stored = json.loads(page.evaluate("localStorage.getItem('emoji-reactions')"))["c"]
    assert stored == {f"{THUMBS} {ARTICLE}": "like", f"demo {ARTICLE}": "happy"}
    page.reload()
    expect(
        page.locator("emoji-reactions").nth(0).get_by_role("button", name="Like 1", exact=True)
    ).to_have_attribute("aria-pressed", "true")
    assert page.errors == []


def test_by_keyboard_a_reader_likes_changes_to_dislike_and_takes_it_back(page, bars, store):
    thumbs, emotions = bars
    like = thumbs.get_by_role("button", name=re.compile("^Like"))
    dislike = thumbs.get_by_role("button", name=re.compile("^Dislike"))
    like.focus()
    page.keyboard.press("Enter")
    # The reader's own vote shows at once, before the server answers.
    expect(like).to_have_accessible_name("Like 1")
    expect(like).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Tab")
    expect(dislike).to_be_focused()
    page.keyboard.press("Space")
    expect(dislike).to_have_accessible_name("Dislike 1")
    expect(dislike).to_have_attribute("aria-pressed", "true")
    expect(like).to_have_accessible_name("Like 0")
    expect(like).to_have_attribute("aria-pressed", "false")
    expect(thumbs.get_by_role("group", name="Like or dislike")).to_be_visible()
    wait_until(lambda: store.counts(THUMBS, ARTICLE) == {"dislike": 1})
    page.keyboard.press("Enter")  # the same choice again: taken back
    expect(dislike).to_have_accessible_name("Dislike 0")
    expect(thumbs.get_by_role("button", pressed=True)).to_have_count(0)
    wait_until(lambda: store.counts(THUMBS, ARTICLE) == {})
    assert [figure for _, figure in figures(emotions)] == ["0%"] * 6
    assert page.errors == []


def test_another_readers_like_reaches_the_pair_live_and_not_the_emotions(page, bars, store):
    thumbs, emotions = bars
    demo = store.get_site("demo")
    other = store.reader_hash("demo", "another-reader-aaaaaaaa")
    store.set_reaction(demo.for_set("thumbs"), ARTICLE, other, "dislike")
    expect(thumbs.get_by_role("button", name="Dislike 1", exact=True)).to_be_visible()
    assert [figure for _, figure in figures(emotions)] == ["0%"] * 6
    store.set_reaction(demo, ARTICLE, other, "sad")
    expect(emotions.get_by_role("button", name="Sad 100%", exact=True)).to_be_visible()
    assert figures(thumbs) == [(LIKE, "0"), (DISLIKE, "1")]
    streams = sorted(url.split("?")[1] for url in page.api if "/api/v1/stream?" in url)
    assert streams == [
        f"site=demo&article={ARTICLE}&set=",
        f"site=demo&article={ARTICLE}&set=thumbs",
    ]


def test_your_reactions_lists_both_sets_and_takes_them_all_back(page, bars, store):
    thumbs, emotions = bars
    thumbs.get_by_role("button", name="Like 0", exact=True).click()
    emotions.get_by_role("button", name="Happy 0%", exact=True).click()
    expect(emotions.get_by_role("button", name="Happy 100%", exact=True)).to_be_visible()
    wait_until(lambda: store.counts("demo", ARTICLE) == {"happy": 1})
    mine = emotions.locator("summary")
    mine.focus()
    page.keyboard.press("Enter")
    items = emotions.locator("li")
    title = page.title()
    expect(items).to_have_count(3)
    assert sorted(items.all_text_contents()) == sorted(
        [f"{HAPPY} {title}", f"{LIKE} {title} \N{MIDDLE DOT} thumbs", "Take back all"]
    )
    emotions.get_by_role("button", name="Take back all", exact=True).click()
    expect(items).to_have_text(["None"])
    expect(thumbs.get_by_role("button", name="Like 0", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )
    expect(emotions.get_by_role("button", name="Happy 0%", exact=True)).to_have_attribute(
        "aria-pressed", "false"
    )
    assert store.counts(THUMBS, ARTICLE) == store.counts("demo", ARTICLE) == {}
    stored = json.loads(page.evaluate("localStorage.getItem('emoji-reactions')"))
    assert stored.get("c", {}) == {}
    assert page.errors == []


def test_a_script_tags_set_is_the_pages_default_on_another_origin(browser, live_server, store):
    """A site owner's page whose script tag says data-set="thumbs": its bars count likes, one
    that says data-set="" the default set; one cross-origin batch reads them all, and a like
    from that origin is counted in the set."""
    html = (
        "<title>Two posts</title>"
        '<emoji-reactions data-article="first"></emoji-reactions>'
        '<emoji-reactions data-article="second"></emoji-reactions>'
        '<emoji-reactions data-article="first" data-set=""></emoji-reactions>'
        f'<script src="{live_server.url}/embed.js" data-site="blog" data-set="thumbs" '
        'data-live="off" async></script>'
    )
    context = browser.new_context(user_agent=BROWSER_UA)
    page = context.new_page()
    batches = []
    page.on("request", lambda r: "/reactions/batch" in r.url and batches.append(r.url))
    with host_page(html) as url:
        store.save_site(Site("blog", (url.rstrip("/"),), sets=(THUMBS_SET,)))
        page.goto(url)
        first, second, emotions = (page.locator("emoji-reactions").nth(i) for i in range(3))
        expect(emotions.get_by_role("button", name="Happy 0%", exact=True)).to_be_visible()
        expect(second.get_by_role("button", name="Dislike 0", exact=True)).to_be_visible()
        first.get_by_role("button", name="Like 0", exact=True).click()
        expect(first.get_by_role("button", name="Like 1", exact=True)).to_be_visible()
        wait_until(lambda: store.counts(scope("blog", "thumbs"), "first") == {"like": 1})
    context.close()
    assert len(batches) == 1
    assert store.counts("blog", "first") == {}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_on_both_bars_before_and_after_a_like(browser, live_server, scheme):
    context = browser.new_context(user_agent=BROWSER_UA, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{live_server.url}/demo/thumbs")
    thumbs = page.locator("emoji-reactions").nth(0)
    expect(thumbs.get_by_role("button", name="Like 0", exact=True)).to_be_visible()
    found = violations(page)
    thumbs.get_by_role("button", name="Like 0", exact=True).click()
    expect(thumbs.get_by_role("button", name="Like 1", exact=True)).to_be_visible()
    found += violations(page)
    context.close()
    assert found == []
