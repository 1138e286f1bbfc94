"""Refresh the README's screenshots of the bar on the demo page, light and dark.

    .venv/bin/python scripts/screenshots.py

Starts an embedded Redis in a temporary directory, serves the app, adds a few reactions and
photographs the demo page in headless Chromium (Debian's `chromium`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.conftest import BROWSER_UA  # noqa: E402
from widget import create_app  # noqa: E402
from widget.embedded_redis import EmbeddedRedis  # noqa: E402

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ADMIN_PASSWORD = "screenshot-only-password"
VOTES = {"happy": 5, "sad": 0, "excited": 3, "sleepy": 1, "angry": 0, "surprise": 3}


def seed_history(store) -> None:
    """Reactions spread over the last 30 days, so the admin chart has something to show."""
    import random
    import time

    demo = store.get_site("demo")
    rng = random.Random(4)
    now = time.time()
    for slug, weight in (("tiny-gardens", 3), ("night-trains", 2)):
        for number in range(40 * weight):
            when = now - rng.random() ** 2 * 30 * 86400
            reaction = rng.choice(["happy", "happy", "excited", "surprise", "sad", "sleepy"])
            reader = store.reader_hash("demo", f"history-{slug}-{number}")
            title = slug.replace("-", " ").capitalize()
            store.set_reaction(demo, slug, reader, reaction, title=title, now=when)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not chromium:
        sys.exit("needs Chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as data, EmbeddedRedis(data) as redis_server:
        app = create_app(
            {"REDIS_URL": redis_server.url, "REACTIONS_ADMIN_PASSWORD": ADMIN_PASSWORD}
        )
        store = app.extensions["reactions"]
        number = 0
        for reaction, count in VOTES.items():
            for _ in range(count):
                number += 1
                reader = store.reader_hash("demo", f"screenshot-reader-{number:04d}")
                store.set_reaction(store.get_site("demo"), "slow-mornings", reader, reaction)
        seed_history(store)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/demo"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
            # A browser's user agent: headless Chromium's own is treated as a bot, not counted.
            page = browser.new_page(viewport={"width": 760, "height": 900}, user_agent=BROWSER_UA)
            page.goto(url)
            page.wait_for_function(
                "() => document.querySelector('emoji-reactions').shadowRoot"
                ".querySelectorAll('button').length === 6"
            )
            # This reader picks Excited, so the picture shows a chosen reaction too.
            with page.expect_response("**/api/v1/reactions"):
                page.locator("emoji-reactions").get_by_role("button", name="Excited 25%").click()
            page.evaluate("document.activeElement.blur()")
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                target = os.path.join(ROOT, "docs", f"bar-{scheme}.png")
                page.locator("main").screenshot(path=target)
                print(f"wrote {os.path.relpath(target, ROOT)}")
            # A phone: the six reactions in two rows, none cut off.
            page.emulate_media(color_scheme="light")
            page.set_viewport_size({"width": 375, "height": 900})
            target = os.path.join(ROOT, "docs", "bar-phone.png")
            page.locator("emoji-reactions").screenshot(path=target)
            print(f"wrote {os.path.relpath(target, ROOT)}")
            admin_page(browser, f"http://127.0.0.1:{server.server_port}")
            browser.close()
        server.shutdown()


def admin_page(browser, base: str) -> None:
    """The admin's site page, after a few weeks of (made-up) reactions on three articles."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{base}/admin/sites/demo")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/sites/demo*")
    target = os.path.join(ROOT, "docs", "admin-site.png")
    page.screenshot(path=target, full_page=True)
    print(f"wrote {os.path.relpath(target, ROOT)}")


if __name__ == "__main__":
    main()
