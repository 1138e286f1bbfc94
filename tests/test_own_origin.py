"""The demo site allows `self`, the server's own origin. That origin comes from the settings
(REACTIONS_PUBLIC_URL, REACTIONS_ALLOWED_HOSTS), never from a Host header alone: through DNS
rebinding, a page of any origin reaches the server under its own name."""

from __future__ import annotations

import pytest

from tests.servers import BROWSER_UA, NO_LIMITS, SECRET
from widget import config, create_app

READER = "reader-token-aaaaaaaaaaaa"


@pytest.fixture
def make_client(redis_url, redis_client):
    apps = []

    def make(**settings):
        app = create_app(
            {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS | settings
        )
        apps.append(app)
        client = app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = BROWSER_UA
        return client

    yield make
    for app in apps:
        app.extensions["reactions_live"].stop()


def vote_from(client, server: str, origin: str, **extra):
    """A demo vote sent to `server` (scheme://Host) from a page of `origin`."""
    body = {"site": "demo", "article": "a", "reader": READER, "reaction": "happy", **extra}
    return client.post("/api/v1/reactions", json=body, headers={"Origin": origin}, base_url=server)


@pytest.mark.parametrize(
    "server",
    ["http://evil.test:8801", "http://evil.test", "http://127.0.0.1.evil.test:8000"],
)
def test_a_rebound_host_is_not_the_demo_s_own_origin(make_client, redis_client, server):
    answer = vote_from(make_client(), server, origin=server)

    assert answer.status_code == 403 and answer.get_json()["error"] == "origin_not_allowed"
    assert redis_client.keys("rx:{demo}:*") == []


@pytest.mark.parametrize(
    "server", ["http://127.0.0.1:8801", "http://localhost:5000", "http://[::1]:8000"]
)
def test_the_demo_counts_out_of_the_box_on_the_loopback_names(make_client, server):
    answer = vote_from(make_client(), server, origin=server, url=f"{server}/demo")

    assert answer.status_code == 200 and answer.get_json()["counted"] is True


def test_with_a_public_url_that_origin_is_the_demo_s_whatever_the_host(make_client):
    client = make_client(REACTIONS_PUBLIC_URL="https://reactions.example.com/rx")

    behind_a_proxy = vote_from(
        client, "http://10.0.0.5:8000", origin="https://reactions.example.com"
    )
    rebound = vote_from(client, "http://evil.test:8801", origin="http://evil.test:8801")

    assert behind_a_proxy.status_code == 200
    assert rebound.status_code == 403


def test_allowed_hosts_name_the_server_for_the_demo(make_client):
    client = make_client(REACTIONS_ALLOWED_HOSTS="reactions.lan:8000, stats.lan")

    assert (
        vote_from(client, "http://reactions.lan:8000", "http://reactions.lan:8000").status_code
        == 200
    )
    assert vote_from(client, "http://stats.lan:9000", "http://stats.lan:9000").status_code == 200
    assert (
        vote_from(client, "http://reactions.lan:9000", "http://reactions.lan:9000").status_code
        == 403
    )
    assert vote_from(client, "http://localhost:8000", "http://localhost:8000").status_code == 403


@pytest.mark.parametrize("value", ["https://reactions.example.com", "a b", "host/path", "é.lan"])
def test_allowed_hosts_that_are_not_host_names_stop_the_start(value):
    with pytest.raises(config.ConfigError, match="REACTIONS_ALLOWED_HOSTS"):
        config.load({"REACTIONS_ALLOWED_HOSTS": value})
