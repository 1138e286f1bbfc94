"""axe-core finds nothing on the reader's pages and the admin's, light and dark, on a phone and
a desktop, before and after a reaction."""

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.servers import BROWSER_UA, admin_app

PASSWORD = "accessible admin password"
# Experimental in the axe-core this package bundles, so off unless asked for: WCAG 2.5.3,
# a control's accessible name contains its visible text.
AXE_OPTIONS = {
    "rules": {"label-content-name-mismatch": {"enabled": True}},
    "resultTypes": ["violations"],
}


@pytest.fixture
def app(redis_url, redis_client):
    app = admin_app(redis_url, PASSWORD)
    yield app
    app.extensions["reactions_live"].stop()


def violations(page) -> list[str]:
    """Each violation as `rule: where`, so a failure says what to fix."""
    results = Axe().run(page, options=AXE_OPTIONS).response
    return [f"{v['id']}: {node['target']}" for v in results["violations"] for node in v["nodes"]]


@pytest.fixture(params=["light", "dark"])
def color_scheme(request):
    return request.param


@pytest.fixture(params=[320, 1280], ids=["phone", "desktop"])
def viewed(browser, request, color_scheme):
    """A page of a browser of that width and color scheme."""
    context = browser.new_context(
        user_agent=BROWSER_UA,
        color_scheme=color_scheme,
        viewport={"width": request.param, "height": 900},
    )
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("path", ["/demo", "/demo/blog"])
def test_the_reader_pages_have_no_violations_before_and_after_a_reaction(viewed, live_server, path):
    page = viewed
    page.goto(f"{live_server.url}{path}")
    happy = page.locator("emoji-reactions").first.get_by_role("button", name="Happy 0%")
    happy.wait_for()
    assert violations(page) == []

    happy.click()
    page.locator("emoji-reactions").first.get_by_role("button", name="Happy 100%").wait_for()
    assert violations(page) == []


def test_the_admin_pages_have_no_violations(viewed, live_server, store):
    page = viewed
    store.set_reaction(
        store.get_site("demo"), "slow-mornings", "reader-1", "happy", title="Slow mornings"
    )
    page.goto(f"{live_server.url}/admin/login")
    assert violations(page) == []

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    for path in ("", "sites/demo", "sites/demo/reactions", "sites/demo/article?id=slow-mornings"):
        page.goto(f"{live_server.url}/admin/{path}")
        assert violations(page) == [], path


def test_the_name_check_runs_and_finds_the_old_bars_name(page):
    """The bar's old markup: it showed "Happy" and "0 %", and was named "Happy, 0%"."""
    page.set_content(
        '<html lang="en"><title>Old bar</title><main><h1>A post</h1>'
        '<button aria-label="Happy, 0%" style="display: grid"><i aria-hidden="true"></i>'
        '<b aria-hidden="true">😄</b><span>Happy</span><small>0 %</small></button>'
        "</main></html>"
    )
    assert violations(page) == ["label-content-name-mismatch: ['button']"]
    assert Axe().run(page).response["violations"] == []  # off unless enabled
