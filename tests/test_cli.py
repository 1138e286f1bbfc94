"""The `reactions` command: sites, and `serve` as an operator runs it."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.conftest import Server
from widget.cli import GUNICORN_CONF, main
from widget.embedded_redis import answers, socket_url


@pytest.fixture
def runner(redis_server, redis_client):
    return CliRunner(env={"REDIS_URL": redis_server.url})


def test_help_documents_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "sites"):
        assert command in result.output
    for args in (["serve", "--help"], ["sites", "add", "--help"], ["sites", "list", "--help"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and "Usage:" in result.output
    assert "--host" in CliRunner().invoke(main, ["serve", "--help"]).output


def test_sites_add_registers_origins_and_prints_the_snippet(runner, redis_client):
    result = runner.invoke(
        main,
        [
            "sites",
            "add",
            "blog",
            "--origin",
            "https://Blog.example.com",
            "--origin",
            "https://www.example.com/",
        ],
    )
    assert result.exit_code == 0, result.output
    assert 'data-site="blog"' in result.output
    record = json.loads(redis_client.hget("rx:sites", "blog"))
    assert record["origins"] == ["https://blog.example.com", "https://www.example.com"]
    listed = runner.invoke(main, ["sites", "list"]).output
    assert "blog\thttps://blog.example.com" in listed
    assert "demo\t(this server's own origin)" in listed


@pytest.mark.parametrize(
    "args",
    [
        ["sites", "add", "blog"],
        ["sites", "add", "blog", "--origin", "blog.example.com"],
        ["sites", "add", "Bad Name", "--origin", "https://x.org"],
    ],
)
def test_sites_add_refuses_bad_input(runner, redis_client, args):
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert redis_client.hlen("rx:sites") == 0


def test_sites_remove(runner, redis_client):
    runner.invoke(main, ["sites", "add", "blog", "--origin", "https://blog.example.com"])
    assert runner.invoke(main, ["sites", "remove", "blog"]).exit_code == 0
    assert redis_client.hlen("rx:sites") == 0
    assert runner.invoke(main, ["sites", "remove", "blog"]).exit_code == 1


def test_sites_add_without_a_server_uses_the_embedded_redis(tmp_path):
    env = {"REACTIONS_DATA_DIR": str(tmp_path), "REDIS_URL": ""}
    result = CliRunner(env=env).invoke(main, ["sites", "add", "blog", "--origin", "https://b.org"])
    assert result.exit_code == 0, result.output
    assert not answers(socket_url(str(tmp_path))), "the temporary Redis must be stopped"
    listed = CliRunner(env=env).invoke(main, ["sites", "list"])
    assert "blog\thttps://b.org" in listed.output


def test_invalid_config_names_the_variable(tmp_path):
    result = CliRunner(env={"REACTIONS_APPENDFSYNC": "sometimes"}).invoke(main, ["sites", "list"])
    assert result.exit_code == 1 and "REACTIONS_APPENDFSYNC" in result.output


def test_serve_keeps_every_acknowledged_reaction_across_a_restart(tmp_path):
    server = Server(tmp_path / "data").start()
    try:
        for number in range(30):
            server.vote(f"reader-{number:03d}-zzzzzzzzzzzz", ["happy", "sad", "angry"][number % 3])
        server.vote("reader-000-zzzzzzzzzzzz", None)
        before = server.counts()
    finally:
        code, output = server.stop()
    assert code == 0, output
    assert "Demo page: http://127.0.0.1:" in output
    assert "Embedded Redis stopped." in output
    assert not answers(socket_url(str(tmp_path / "data")))
    assert (tmp_path / "data" / "appendonly.aof").stat().st_size > 0
    assert before["happy"] == 9 and before["sad"] == 10 and before["angry"] == 10

    again = Server(tmp_path / "data").start()
    try:
        assert again.counts() == before
    finally:
        again.stop()


def test_serve_with_redis_url_starts_no_embedded_redis(tmp_path, redis_server, redis_client):
    server = Server(tmp_path / "unused", REDIS_URL=redis_server.url).start()
    try:
        server.vote("reader-external-zzzzzzzz", "excited")
    finally:
        code, output = server.stop()
    assert code == 0, output
    assert "Embedded Redis" not in output
    assert not (tmp_path / "unused").exists()
    assert redis_client.hgetall("rx:{demo}:a:durable") == {"excited": "1"}


# Run in a fresh interpreter: patching the standard library cannot be undone in this one.
HOOK_CHECK = """
import logging, runpy, sys
from types import SimpleNamespace

hooks = runpy.run_path(sys.argv[2])
worker = SimpleNamespace(log=logging.getLogger("gunicorn.error"))
if sys.argv[1] == "gevent":
    from gevent import monkey

    monkey.patch_all()
    import socket

    import gevent

    def other_connection_served(waited):
        client, server = socket.socketpair()
        served = []
        gevent.spawn(lambda: served.append(server.recv(100)))
        request = SimpleNamespace(method="GET", path="/")
        hooks["pre_request"](worker, request)
        gevent.sleep(0.001 if waited else 0)  # a vote waits for Redis; a cached read does not
        client.send(b"GET /")  # the other connection's request arrives meanwhile
        hooks["post_request"](worker, request, None, None)
        return bool(served)

    print(other_connection_served(waited=False), other_connection_served(waited=True))
else:
    hooks["post_request"](worker, SimpleNamespace(), None, None)
    print("gevent" in sys.modules)
"""


@pytest.mark.parametrize(("worker", "expected"), [("gevent", "True False"), ("gthread", "False")])
def test_after_a_request_that_never_waited_a_gevent_worker_serves_the_others(worker, expected):
    """`reactions serve` loads gunicorn_conf.py. After a request that never waited for I/O,
    its hook lets a gevent worker poll and serve every connection whose request has arrived
    (a plain sleep(0) did not); a request that waited gave them their turn already, and
    under threads the hook does nothing."""
    result = subprocess.run(
        [sys.executable, "-c", HOOK_CHECK, worker, GUNICORN_CONF],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == expected


FREEZE_CHECK = """
import gc, runpy, sys

from widget import create_app

hooks = runpy.run_path(sys.argv[1])
app = create_app({"REDIS_URL": "unix:///nothing-listens-here.sock"})
loaded = len(gc.get_objects())
hooks["post_worker_init"](None)
print(loaded, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_a_worker_keeps_the_loaded_app_out_of_the_collectors_full_passes():
    result = subprocess.run(
        [sys.executable, "-c", FREEZE_CHECK, GUNICORN_CONF],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    loaded, frozen, still_scanned = map(int, result.stdout.split())
    assert frozen >= loaded * 0.9
    assert still_scanned < loaded / 20
