"""Password guessing: the login lock-out holds per address and for everyone together, and the
admin still has a way in during an attack, against a real Redis."""

import re

import pytest
from click.testing import CliRunner

from tests.servers import BROWSER_UA, NO_LIMITS, SECRET
from widget import create_app
from widget.admin import FAILURE_WINDOW, MAX_FAILURES
from widget.cli import main

PASSWORD = "correct horse battery"
GLOBAL_BUDGET = 12


@pytest.fixture
def app(redis_url, redis_client):
    app = create_app(
        {
            "REDIS_URL": redis_url,
            "REACTIONS_SECRET_KEY": SECRET,
            "REACTIONS_ADMIN_PASSWORD": PASSWORD,
            "REACTIONS_LOGIN_DELAY": 0,
            "REACTIONS_LOGIN_FAILURES_GLOBAL": GLOBAL_BUDGET,
        }
        | NO_LIMITS
    )
    yield app
    app.extensions["reactions_live"].stop()


def log_in(client, password, address, agent=BROWSER_UA):
    """A login from `address` with `agent`, as a browser sends it (its page, then the form)."""
    environ = {"REMOTE_ADDR": address}
    headers = {"User-Agent": agent}
    page = client.get("/admin/login", headers=headers, environ_base=environ)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post(
        "/admin/login",
        data={"password": password, "csrf_token": csrf},
        headers=headers,
        environ_base=environ,
    )


def agent(number):
    return BROWSER_UA.replace("Chrome/156.0.0.0", f"Chrome/156.2.{number}.0")


def exhaust_global_budget(client, first_address=1):
    """Wrong passwords from many addresses, fewer than each address's own limit."""
    for number in range(GLOBAL_BUDGET):
        address = f"198.51.100.{first_address + number // 2}"
        assert log_in(client, "guess", address, agent(number)).status_code == 401


@pytest.mark.parametrize(
    "addresses",
    [
        pytest.param(["203.0.113.50"], id="IPv4"),
        pytest.param([f"2001:db8:5:5::{n:x}" for n in range(1, 20)], id="IPv6 /64"),
    ],
)
def test_guesses_with_rotating_user_agents_are_locked_out(app, redis_client, addresses):
    client = app.test_client()
    for number in range(MAX_FAILURES):
        answer = log_in(client, "guess", addresses[number % len(addresses)], agent(number))
        assert answer.status_code == 401
    # Even the right password is refused now, whatever the agent and address in that block.
    locked = log_in(client, PASSWORD, addresses[-1], agent(99))
    assert locked.status_code == 429 and b"Too many failed attempts" in locked.data
    assert 0 < int(locked.headers["Retry-After"]) <= FAILURE_WINDOW
    assert len(redis_client.keys("rx:admin:fail:*")) == 1  # one counter for the address
    # The lock-out is the address's: the admin elsewhere is not held by it.
    assert log_in(client, PASSWORD, "192.0.2.80").status_code == 302


def test_the_global_budget_holds_across_addresses(app, redis_client):
    client = app.test_client()
    exhaust_global_budget(client)
    locked = log_in(client, PASSWORD, "192.0.2.80")
    assert locked.status_code == 429
    # Bounded in time: refused attempts are not counted and do not push the end further.
    ttl = redis_client.ttl("rx:admin:failures")
    assert 0 < int(locked.headers["Retry-After"]) <= ttl <= FAILURE_WINDOW
    for number in range(5):
        assert log_in(client, "guess", f"192.0.2.{number + 1}").status_code == 429
    assert int(redis_client.get("rx:admin:failures")) == GLOBAL_BUDGET
    assert int(redis_client.hget("rx:admin", "failed_logins")) == GLOBAL_BUDGET
    assert redis_client.ttl("rx:admin:failures") <= ttl


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_during_an_attack_the_admin_gets_in_from_the_servers_own_machine(app, address):
    client = app.test_client()
    exhaust_global_budget(client)
    assert log_in(client, PASSWORD, "192.0.2.80").status_code == 429
    answer = log_in(client, PASSWORD, address)
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/"
    assert client.get("/admin/", environ_base={"REMOTE_ADDR": address}).status_code == 200


def test_during_an_attack_reactions_admin_unlock_lets_the_admin_in(app, redis_url, redis_client):
    client = app.test_client()
    exhaust_global_budget(client)
    for number in range(MAX_FAILURES):
        log_in(client, "guess", "192.0.2.80", agent(number))
    assert log_in(client, PASSWORD, "192.0.2.80").status_code == 429

    result = CliRunner(env={"REDIS_URL": redis_url}).invoke(main, ["admin", "unlock"])
    assert result.exit_code == 0, result.output
    assert "Login unlocked" in result.output
    assert redis_client.keys("rx:admin:fail*") == []
    assert log_in(client, PASSWORD, "192.0.2.80").status_code == 302
