"""An operator reads the logs: one line per notable event (start, stop, Redis lost and back,
rate-limit bursts, admin logins, imports), plain or JSON lines, never a client's address or
a reader token."""

import json
import os
import re
import signal
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, Server, wait_until
from tests.test_serve_recovery import exists, linux_only, redis_pid
from tests.test_wordpress import BLOG, FIELD_NOTES
from widget import config, create_app, logs, security
from widget.cli import main
from widget.embedded_redis import EmbeddedRedis
from widget.store import Site

PASSWORD = "correct horse battery"
CLIENT = "203.0.113.7"
READER = "reader-secret-token-7f3a9c2e"


def make_app(redis_url, **settings):
    app = create_app(
        {
            "REDIS_URL": redis_url,
            "REACTIONS_SECRET_KEY": SECRET,
            "REACTIONS_ADMIN_PASSWORD": PASSWORD,
            "REACTIONS_LOGIN_DELAY": 0,
        }
        | NO_LIMITS
        | settings
    )
    app.extensions["reactions"].save_site(Site("blog", (BLOG,)))
    return app


@pytest.fixture
def make(redis_url, redis_client):
    apps = []

    def make(**settings):
        apps.append(make_app(redis_url, **settings))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["reactions_live"].stop()
    logs.setup("plain")


def vote(client, reader=READER, article="post", **headers):
    body = {"site": "blog", "article": article, "reader": reader, "reaction": "happy"}
    return client.post(
        "/api/v1/reactions",
        json=body,
        headers={"Origin": BLOG, "User-Agent": BROWSER_UA, **headers},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )


def log_in(client, password, **headers):
    environ = {"REMOTE_ADDR": "127.0.0.1"}
    headers = {"User-Agent": BROWSER_UA, **headers}
    page = client.get("/admin/login", headers=headers, environ_base=environ)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    return client.post(
        "/admin/login",
        data={"password": password, "csrf_token": csrf},
        headers=headers,
        environ_base=environ,
    )


def events(caplog, name):
    return [r for r in caplog.records if getattr(r, "event", None) == name]


def fingerprint_of(app, address):
    with app.test_request_context(environ_base={"REMOTE_ADDR": address}):
        return security.address_fingerprint(app.extensions["reactions"], security.request)


def test_a_burst_of_refused_votes_makes_one_line_with_the_count(make, caplog):
    app = make(REACTIONS_RATE_PER_MINUTE=5)
    client = app.test_client()

    answers = [vote(client, article=f"post-{n}").status_code for n in range(205)]

    assert answers.count(429) == 200
    (burst,) = events(caplog, "rate_limit.burst")
    assert burst.fields == {
        "site": "blog",
        "reason": "client",
        "refused": 1,
        "address": fingerprint_of(app, "127.0.0.1"),
    }


def test_a_burst_that_goes_on_makes_a_line_a_minute_with_what_was_refused_meanwhile():
    clock = iter([0.0, 1.0, 30.0, 59.0, 61.0, 62.0, 200.0])
    bursts = logs.Throttle(seconds=60, clock=lambda: next(clock))

    bursts_seen = [bursts.passes(("blog", "site")) for _ in range(7)]

    # The first refusal at once; the next line after a minute stands for the four since.
    assert bursts_seen == [1, 0, 0, 0, 4, 0, 2]


def test_admin_logins_are_logged_with_the_address_fingerprint_only(make, caplog):
    app = make()
    client = app.test_client()

    assert log_in(client, "guess").status_code == 401
    assert log_in(client, PASSWORD).status_code == 302

    address = fingerprint_of(app, "127.0.0.1")
    (failed,) = events(caplog, "admin.login_failed")
    (success,) = events(caplog, "admin.login")
    assert failed.fields == {"address": address, "failures": 1}
    assert failed.levelname == "WARNING"
    assert success.fields == {"address": address}


def test_a_locked_out_address_makes_one_line_however_often_it_tries(make, caplog):
    app = make()
    client = app.test_client()
    for _ in range(5):
        assert log_in(client, "guess").status_code == 401

    refused = [log_in(client, "guess").status_code for _ in range(20)]

    assert refused == [429] * 20
    (locked,) = events(caplog, "admin.locked_out")
    assert locked.fields["address"] == fingerprint_of(app, "127.0.0.1")
    assert locked.fields["refused"] == 1
    assert len(events(caplog, "admin.login_failed")) == 5


def test_redis_lost_and_back_make_one_line_each_per_outage(tmp_path, caplog):
    redis = EmbeddedRedis(str(tmp_path / "redis")).start()
    app = make_app(redis.url, REACTIONS_REDIS_TIMEOUT=0.5)
    client = app.test_client()
    try:
        assert vote(client).status_code == 200
        redis.stop()

        during = [vote(client, reader=f"reader-{n}-aaaaaaaaaaaaaa").status_code for n in range(5)]
        redis.start()
        after = [vote(client, reader=f"reader-{n}-bbbbbbbbbbbbbb").status_code for n in range(3)]
    finally:
        app.extensions["reactions_live"].stop()
        redis.stop()

    assert during == [503] * 5
    assert after == [200] * 3
    (lost,) = events(caplog, "redis.lost")
    (back,) = events(caplog, "redis.back")
    assert lost.levelname == "ERROR"
    assert lost.fields == {"error": "ConnectionError"}
    assert back.fields["seconds"] >= 0
    assert caplog.records.index(lost) < caplog.records.index(back)


def test_an_import_is_logged_with_its_site_and_change(redis_url, redis_client, caplog):
    runner = CliRunner(env={"REDIS_URL": redis_url})
    runner.invoke(main, ["sites", "add", "blog", "--origin", BLOG])

    result = runner.invoke(main, ["import", "wordpress", str(FIELD_NOTES), "--site", "blog"])

    assert result.exit_code == 0, result.output
    (imported,) = events(caplog, "import.wordpress")
    assert imported.fields["site"] == "blog"
    printed = re.search(r"Counts changed by \+(\d+)", result.output).group(1)
    assert imported.fields["change"] == int(printed) > 0
    assert imported.fields["dry_run"] is False


@pytest.mark.parametrize(
    "line, expected",
    [
        ({"event": "admin.login", "fields": {"address": "ab12"}}, " admin.login "),
        ({"event": "x", "fields": {"site": "two words\nINFO forged"}}, 'site="two words\\nINFO'),
    ],
)
def test_a_plain_line_is_one_line_whatever_a_client_sent(line, expected):
    record = logs.events.makeRecord("widget.events", 20, "", 0, "said", (), None, extra=line)

    text = logs.PlainFormatter().format(record)

    assert "\n" not in text
    assert expected in text
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO ", text)


def test_json_lines_parse_and_hold_neither_the_address_nor_the_reader_token(make, capsys):
    app = make(
        REACTIONS_RATE_PER_MINUTE=5, REACTIONS_TRUSTED_PROXIES=1, REACTIONS_LOG_FORMAT="json"
    )
    client = app.test_client()
    forwarded = {"X-Forwarded-For": CLIENT}
    for n in range(30):
        vote(client, article=f"post-{n}", **forwarded)
    for _ in range(7):
        log_in(client, "guess", **forwarded)
    log_in(client, PASSWORD)

    output = capsys.readouterr().err
    lines = [json.loads(line) for line in output.splitlines()]

    assert {line["event"] for line in lines} >= {
        "rate_limit.burst",
        "admin.login_failed",
        "admin.locked_out",
        "admin.login",
    }
    for line in lines:
        assert {"time", "level", "event", "message", "pid"} <= line.keys()
    for secret in (CLIENT, "127.0.0.1", READER):
        assert secret not in output
    burst = next(line for line in lines if line["event"] == "rate_limit.burst")
    assert burst["address"] == fingerprint_of(app, CLIENT)


@linux_only
def test_serve_logs_start_redis_restart_bursts_and_stop_as_json_lines(tmp_path):
    data = tmp_path / "data"
    server = Server(
        data,
        REACTIONS_LOG_FORMAT="json",
        REACTIONS_TRUSTED_PROXIES="1",
        REACTIONS_RATE_PER_MINUTE="5",
    ).start()
    try:
        refused = [post_vote(server, f"post-{n}") for n in range(205)]
        killed = redis_pid(data)
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: not exists(killed))
        wait_until(lambda: '"live.back"' in "".join(server.output), timeout=20)
    finally:
        code, output = server.stop()

    assert code == 0, output
    assert refused.count(429) == 200
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    names = [line["event"] for line in lines]
    for name in ("server.start", "redis.embedded_lost", "redis.embedded_back", "live.lost"):
        assert name in names, output
    assert names[-1] == "server.stop"
    assert lines[-1]["signal"] == "SIGTERM" and lines[-1]["status"] == 0
    assert 1 <= names.count("rate_limit.burst") <= 2
    assert "gunicorn" in names  # gunicorn's own lines are JSON lines too
    for line in lines:
        assert {"time", "level", "event", "message"} <= line.keys()
    # The server's own address is in its start-up lines; a client's address is nowhere.
    assert CLIENT not in output and READER not in output
    assert "127.0.0.1" not in output.replace(server.url, "")


def post_vote(server, article):
    body = {"site": "demo", "article": article, "reader": READER, "reaction": "happy"}
    request = urllib.request.Request(
        f"{server.url}/api/v1/reactions",
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Origin": server.url,
            "User-Agent": BROWSER_UA,
            "X-Forwarded-For": CLIENT,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("value", ["xml", "JSON", "syslog"])
def test_an_unknown_log_format_stops_the_server_naming_its_variable(value):
    with pytest.raises(config.ConfigError, match="REACTIONS_LOG_FORMAT must be one of plain, json"):
        config.load({"REACTIONS_LOG_FORMAT": value})
