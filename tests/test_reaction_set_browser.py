"""An admin changes a site's reactions while readers have the bar open, in a real headless
Chromium, against `reactions serve` with two worker processes."""

import re

import pytest
from playwright.sync_api import expect

from tests.processes import ServerProcesses
from tests.servers import host_page, wait_until
from widget.store import Site, Store, connect

PASSWORD = "reaction set admin password"
DEFAULT = [
    ("😄", "Happy"), ("😢", "Sad"), ("🤩", "Excited"),
    ("😴", "Sleepy"), ("😠", "Angry"), ("😮", "Surprise"),
]  # fmt: skip


@pytest.fixture
def store(redis_server, redis_client):
    store = Store(connect(redis_server.url, 5.0))
    yield store
    store.client.close()


@pytest.fixture
def server(tmp_path, redis_server, redis_client):
    server = ServerProcesses(
        tmp_path / "unused", redis_server.url, REACTIONS_ADMIN_PASSWORD=PASSWORD
    ).start()
    yield server
    code, output = server.stop()
    assert code == 0, output


def page_with_a_bar(server, live="stream"):
    return f"""<!doctype html><html><head><title>A post</title></head><body>
<article><h1>A post</h1></article>
<script src="{server.url}/embed.js" data-site="blog" data-live="{live}" async></script>
<emoji-reactions data-article="a-post"></emoji-reactions>
</body></html>"""


def expect_set(page, expected, timeout=5000):
    """The bar shows these (emoji, label) in this order, each button named by its label."""
    buttons = page.locator("emoji-reactions").get_by_role("button")
    expect(buttons).to_have_count(len(expected), timeout=timeout)
    for number, (emoji, label) in enumerate(expected):
        expect(buttons.nth(number)).to_have_accessible_name(
            re.compile(rf"^{re.escape(label)}\b"), timeout=timeout
        )
        expect(buttons.nth(number)).to_contain_text(emoji)
        expect(buttons.nth(number)).to_contain_text(label)


def button(page, label):
    name = re.compile(rf"^{re.escape(label)}\b")
    return page.locator("emoji-reactions").get_by_role("button", name=name)


def vote_from(store, site, reader, reaction):
    store.set_reaction(site, "a-post", store.reader_hash("blog", reader), reaction)


def test_an_open_bar_follows_the_admins_new_set_and_counts_a_new_reaction(
    page, context, server, store
):
    with host_page(page_with_a_bar(server)) as url:
        blog = store.save_site(Site("blog", (url.rstrip("/"),)))
        for number in range(5):
            vote_from(store, blog, f"reader-{number}", "angry")
        vote_from(store, blog, "reader-9", "happy")
        reader = page
        reader.goto(url)
        expect_set(reader, DEFAULT)
        expect(button(reader, "Angry")).to_have_accessible_name(re.compile(r"83"))

        admin = context.new_page()
        admin.goto(f"{server.url}/admin/sites/blog/reactions")
        admin.get_by_label("Password").fill(PASSWORD)
        admin.get_by_role("button", name="Log in").click()
        admin.wait_for_url("**/admin/sites/blog/reactions")
        admin.get_by_label("Emoji of happy").fill("😍")
        admin.get_by_label("Label of happy").fill("Loved it")
        admin.get_by_label("Offer angry").uncheck()
        admin.get_by_label("Id of a new reaction").fill("insightful")
        admin.get_by_label("Emoji of the new reaction").fill("💡")
        admin.get_by_label("Label of the new reaction").fill("Insightful")
        admin.get_by_role("button", name="Save reactions").click()
        expect(admin.get_by_role("status")).to_contain_text("Saved")

        new_set = [("😍", "Loved it"), *DEFAULT[1:4], DEFAULT[5], ("💡", "Insightful")]
        expect_set(reader, new_set, timeout=6000)  # through the open stream
        expect(button(reader, "Loved it")).to_have_accessible_name(re.compile(r"100"))

        button(reader, "Insightful").click()
        expect(button(reader, "Insightful")).to_have_attribute("aria-pressed", "true")
        wait_until(lambda: store.counts("blog", "a-post").get("insightful") == 1, timeout=5)
        assert store.counts("blog", "a-post") == {"angry": 5, "happy": 1, "insightful": 1}
        assert reader.errors == []


@pytest.mark.parametrize(
    ("earlier", "retired", "pressed_after"),
    [
        ("Sad", ["angry"], ["Sad"]),  # the earlier choice is still offered: kept
        ("Surprise", ["angry", "surprise"], []),  # retired too: nothing shown as chosen
    ],
)
def test_a_click_on_a_reaction_retired_meanwhile_recovers_by_itself(
    page, server, store, earlier, retired, pressed_after
):
    """The bar neither streams nor polls (data-live="off"), so it still offers the retired
    reaction when the reader clicks it: the server refuses the vote, and the bar shows the
    set the server has now, without an error left on it."""
    with host_page(page_with_a_bar(server, live="off")) as url:
        blog = store.save_site(Site("blog", (url.rstrip("/"),)))
        page.goto(url)
        expect_set(page, DEFAULT)
        button(page, earlier).click()
        wait_until(lambda: store.counts("blog", "a-post") == {earlier.lower(): 1}, timeout=5)

        renamed = blog.reactions[0]._replace(label="Loved it")
        offered = tuple(r for r in blog.reactions[1:] if r.id not in retired)
        changed = store.save_site(
            Site("blog", blog.origins, (renamed, *offered), blog.created,
                 tuple(r for r in blog.reactions if r.id in retired))
        )  # fmt: skip
        # Every server process has it (each answers reads from its own copy).
        wait_until(
            lambda: all(
                [r["label"] for r in server.read("blog", "a-post")["reactions"]]
                == [r.label for r in changed.reactions]
                for _ in range(6)
            ),
            timeout=5,
        )

        button(page, "Angry").click()
        expect_set(page, [(r.emoji, r.label) for r in changed.reactions])
        expect(page.get_by_text("reactions unavailable")).to_have_count(0)
        pressed = page.locator("emoji-reactions").get_by_role("button", pressed=True)
        expect(pressed).to_have_count(len(pressed_after))
        for label in pressed_after:
            expect(pressed).to_have_accessible_name(re.compile(rf"^{label}\b"))
        assert store.counts("blog", "a-post") == {earlier.lower(): 1}  # no retired id counted
        assert [e for e in page.errors if "status of 400" not in e] == []
