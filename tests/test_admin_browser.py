"""An admin in a real headless Chromium: log in, read a site, download the CSV, add a named
reaction set and read its figures apart."""

import csv
import io

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.servers import admin_app
from widget.store import SELF_ORIGIN, Site

PASSWORD = "browser admin password"


@pytest.fixture
def app(redis_url, redis_client):
    return admin_app(redis_url, PASSWORD)


def test_admin_logs_in_sees_the_chart_and_top_article_and_downloads_csv(page, live_server, store):
    demo = store.get_site("demo")
    for number in range(5):
        store.set_reaction(
            demo, "loved-post", f"reader-{number}", "happy", title="The most loved post"
        )
    store.set_reaction(demo, "quiet-post", "reader-9", "sleepy", title="A quiet post")

    page.goto(f"{live_server.url}/admin/sites/demo")
    assert "/admin/login" in page.url
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/sites/demo*")

    chart = page.get_by_role("img", name="All articles of demo: 6 reactions over 30 days")
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box["width"] > 300 and box["height"] > 80
    assert page.locator(".chart rect").count() >= 2
    first_row = page.locator("table.articles tbody tr").first
    assert "The most loved post" in first_row.inner_text()

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith("reactions-demo-")
    with open(download.path(), encoding="utf-8") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    assert rows[0]["article"] == "loved-post" and rows[0]["happy"] == "5"
    assert page.errors == []


def test_admin_adds_a_thumbs_set_and_reads_its_figures_apart(page, live_server, store):
    # The demo site as an owner starts, without the thumbs set its built-in record offers.
    demo = store.save_site(Site("demo", (SELF_ORIGIN,)))
    store.set_reaction(demo, "loved-post", "reader-1", "happy", title="The most loved post")
    page.goto(f"{live_server.url}/admin/sites/demo/reactions")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/sites/demo/reactions")

    page.get_by_label("Name").fill("thumbs")
    page.get_by_label("Starting with").select_option("thumbs")
    page.get_by_label("Shown as").last.select_option("count")
    page.get_by_role("button", name="Add set").click()
    page.wait_for_url("**/reactions?saved=thumbs#set-thumbs")
    page.get_by_label("Label of like in set thumbs").fill("Agree")
    page.get_by_role("button", name="Save set “thumbs”").click()
    page.wait_for_url("**/reactions?saved=thumbs#set-thumbs")
    assert page.get_by_role("status").inner_text().startswith("Saved")
    assert store.get_site("demo").named_set("thumbs").reactions[0].label == "Agree"
    thumbs = store.get_site("demo").for_set("thumbs")
    for number in range(3):
        store.set_reaction(
            thumbs, "loved-post", f"reader-{number}", "like", title="The most loved post"
        )
    page.get_by_role("link", name="its figures").click()
    page.wait_for_url("**/admin/sites/demo?set=thumbs")

    chart = page.get_by_role(
        "img", name="All articles of demo, set thumbs: 3 reactions over 30 days"
    )
    assert chart.is_visible()
    first_row = page.locator("table.articles tbody tr").first
    assert (
        "The most loved post" in first_row.inner_text()
        and "Agree" in page.locator("table.articles thead").inner_text()
    )
    results = Axe().run(page).response
    assert results["violations"] == []
    page.get_by_role("link", name="Default").click()
    page.wait_for_url("**/admin/sites/demo")
    assert page.get_by_role(
        "img", name="All articles of demo: 1 reactions over 30 days"
    ).is_visible()
    page.goto(f"{live_server.url}/admin/sites/demo/reactions")
    assert Axe().run(page).response["violations"] == []
    assert page.errors == []
