"""The embed script as shipped: built from its source, small, cached, and not moving the page."""

import gzip
import hashlib
import re

import pytest

from tests.servers import BROWSER_UA
from widget.embed import EMBED_PATH

SOURCE = EMBED_PATH.replace("embed.min.js", "embed.js")


def test_the_shipped_script_is_built_from_the_current_source():
    with open(SOURCE, "rb") as handle:
        wanted = hashlib.sha256(handle.read()).hexdigest()[:16]
    with open(EMBED_PATH, encoding="utf-8") as handle:
        header = handle.readline()
    built = re.match(r"/\*!reactions ([0-9a-f]{16})\*/", header)
    assert built, header
    assert built.group(1) == wanted, "static/js/embed.js changed: run scripts/build_embed.py"


def test_the_script_fits_in_3670_bytes_gzipped(client):
    """3,400 until named reaction sets (data-set, the compact style, one batch for every set)
    added 282 bytes, to 3,658; a read of the counts before each stream retry, 5 more."""
    body = client.get("/embed.js").data
    size = len(gzip.compress(body, 9))
    print(f"\nembed.js: {len(body)} bytes, {size} gzipped")
    assert size <= 3670


def test_the_script_is_served_minified_and_cached(client):
    response = client.get("/embed.js")
    assert response.data.startswith(b"/*!reactions ")
    assert response.data.count(b"\n") <= 20  # minified, not the commented source
    pinned = client.get(f"/embed.{response.headers['ETag'].strip(chr(34))}.js")
    assert "immutable" in pinned.headers["Cache-Control"]
    assert "max-age=31536000" in pinned.headers["Cache-Control"]
    assert (
        client.get("/embed.js", headers={"If-None-Match": response.headers["ETag"]}).status_code
        == 304
    )


@pytest.mark.parametrize(("width", "height"), [(375, 138), (1280, 66)])
def test_bars_reserve_their_height_so_the_page_does_not_shift(browser, live_server, width, height):
    """The demo reserves what the README tells site owners to: two rows of the six reactions
    on a narrow bar, one on a wide one."""
    context = browser.new_context(user_agent=BROWSER_UA, viewport={"width": width, "height": 2000})
    page = context.new_page()
    page.add_init_script(
        "new PerformanceObserver(list => { for (const e of list.getEntries())"
        " document.documentElement.dataset.shift = (+(document.documentElement.dataset.shift"
        " || 0) + e.value) }).observe({type: 'layout-shift', buffered: true})"
    )
    page.goto(f"{live_server.url}/demo/blog")
    page.wait_for_function(
        "() => [...document.querySelectorAll('emoji-reactions')].every("
        "b => b.shadowRoot && b.shadowRoot.querySelectorAll('button').length === 6)"
    )
    page.wait_for_function("() => new Promise(r => requestAnimationFrame(() => r(true)))")
    shift = page.evaluate("() => +(document.documentElement.dataset.shift || 0)")
    heights = page.evaluate(
        "() => [...document.querySelectorAll('emoji-reactions')].map(b => b.getBoundingClientRect().height)"
    )
    context.close()
    assert shift == 0
    assert heights == [height] * 3
