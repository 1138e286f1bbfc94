"""An admin in a real headless Chromium: log in, read a site, download the CSV."""

import csv
import io

import pytest

from tests.servers import admin_app

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
