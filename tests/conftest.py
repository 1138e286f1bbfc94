"""Fixtures, after Flask's own: a real embedded Redis, the app, a client, a live server and
a real headless Chromium."""

from __future__ import annotations

import os

import pytest

from tests.cluster import LocalCluster
from tests.servers import (
    BROWSER_UA,
    CHROMIUM_FLAGS,
    NO_LIMITS,
    PATIENT_REDIS,
    SECRET,
    LiveServer,
    chromium_path,
)
from widget import create_app
from widget.embedded_redis import EmbeddedRedis
from widget.store import connect


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_url(redis_server):
    """The Redis the app under test uses; test modules may override it (e.g. a cluster)."""
    return redis_server.url


@pytest.fixture
def redis_client(redis_url):
    client = connect(redis_url, 5.0)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def app(redis_url, redis_client):
    app = create_app(
        {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET, "TESTING": True}
        | NO_LIMITS
        | PATIENT_REDIS
    )
    yield app
    app.extensions["reactions_live"].stop()  # or it hears every later test's votes


@pytest.fixture
def client(app):
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
    return client


@pytest.fixture
def store(app):
    return app.extensions["reactions"]


@pytest.fixture
def live_server(app):
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs Chromium for the browser tests: apt-get install chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium); browser test skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(user_agent=BROWSER_UA)
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on(
        "console",
        lambda message: page.errors.append(message.text) if message.type == "error" else None,
    )
    yield page
