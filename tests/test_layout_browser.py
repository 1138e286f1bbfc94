"""The bar on phones and desktops: every reaction visible and tappable, no sideways scrolling,
and the height the README tells site owners to reserve."""

import math

import pytest

from tests.servers import BROWSER_UA
from widget.reactions import DEFAULT_REACTIONS, Reaction
from widget.store import SELF_ORIGIN, Site

pytestmark = pytest.mark.usefixtures("redis_client")

LONGER = (
    Reaction("love", "\N{HEAVY BLACK HEART}\N{VARIATION SELECTOR-16}", "Heartwarming"),
    Reaction("mind", "\U0001f92f", "Mind-blowing"),
    Reaction("thanks", "\N{PERSON WITH FOLDED HANDS}", "Thank you so much"),
    Reaction("insight", "\N{ELECTRIC LIGHT BULB}", "Insightful"),
    Reaction("funny", "\N{FACE WITH TEARS OF JOY}", "Hilarious"),
    Reaction("doubt", "\N{THINKING FACE}", "Not convinced"),
)
ROW, GAP, WIDE_BAR = 66, 6, 546  # px, as the README states them


def reserved_height(reactions: int, bar_width: float) -> int:
    """The README's rule: up to 4 buttons a row on a bar narrower than 546px, up to 8 on a
    wider one; rows of 66px, 6px apart."""
    rows = math.ceil(reactions / (8 if bar_width >= WIDE_BAR else 4))
    return rows * ROW + (rows - 1) * GAP


@pytest.mark.parametrize("width", [320, 375, 768, 1280])
@pytest.mark.parametrize("count", [6, 8, 12])  # 12: the most the admin allows
def test_every_reaction_is_visible_and_tappable(browser, live_server, store, width, count):
    store.save_site(Site("demo", (SELF_ORIGIN,), (DEFAULT_REACTIONS + LONGER)[:count]))
    context = browser.new_context(user_agent=BROWSER_UA, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/demo")
    page.wait_for_function(
        "(n) => document.querySelector('emoji-reactions').shadowRoot"
        "?.querySelectorAll('button').length === n",
        arg=count,
    )
    bar = page.evaluate(
        """() => { const bar = document.querySelector('emoji-reactions');
             const box = (e) => { const r = e.getBoundingClientRect();
               return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                       width: r.width, height: r.height}; };
             return {box: box(bar), page: document.documentElement.scrollWidth,
                     buttons: [...bar.shadowRoot.querySelectorAll('button')].map(box)}; }"""
    )
    context.close()
    outer = bar["box"]
    assert bar["page"] <= width  # no sideways scrolling
    assert outer["height"] == reserved_height(count, outer["width"])
    for button in bar["buttons"]:
        assert button["width"] >= 44 and button["height"] >= 44
        assert outer["left"] <= button["left"] and button["right"] <= outer["right"]
        assert outer["top"] <= button["top"] and button["bottom"] <= outer["bottom"]
        assert button["left"] >= 0 and button["right"] <= width


COMPACT_ROW = 28  # px, the height the README tells site owners to reserve for a compact set


@pytest.mark.parametrize("width", [320, 1280])
def test_a_compact_set_is_one_row_of_the_height_the_readme_states(browser, live_server, width):
    """The demo's like/dislike pair (style `count`) above the six emotions: exactly 28px high,
    so the reserved height holds, with buttons above WCAG 2.2's 24 × 24px minimum target."""
    context = browser.new_context(user_agent=BROWSER_UA, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/demo/thumbs")
    page.wait_for_function(
        "() => document.querySelector('emoji-reactions[data-set=thumbs]').shadowRoot"
        "?.querySelectorAll('.c button').length === 2"
    )
    bar = page.evaluate(
        """() => { const bar = document.querySelector('emoji-reactions[data-set=thumbs]');
             const box = (e) => { const r = e.getBoundingClientRect();
               return {top: r.top, bottom: r.bottom, width: r.width, height: r.height}; };
             return {box: box(bar), buttons: [...bar.shadowRoot.querySelectorAll('button')]
               .filter((b) => b.offsetParent).map(box)}; }"""
    )
    context.close()
    assert bar["box"]["height"] == COMPACT_ROW
    assert len(bar["buttons"]) == 2
    for button in bar["buttons"]:
        assert button["width"] >= 24 and button["height"] >= 24
        assert bar["box"]["top"] <= button["top"] and button["bottom"] <= bar["box"]["bottom"]
