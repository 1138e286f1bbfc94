"""The `reactions` command: sites, and `serve` as an operator runs it."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from types import SimpleNamespace
from unittest import mock

import pytest
from click.testing import CliRunner
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi

from tests.servers import BROWSER_UA, Server, wait_until
from widget import config
from widget.cli import admin_password_note, main
from widget.embedded_redis import EmbeddedRedis, EmbeddedRedisError, answers, socket_url
from widget.internals import one_write_response
from widget.serving import GUNICORN_CONF


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


def test_sites_add_leaves_an_existing_site_alone(runner, redis_client):
    """Adding a site twice used to replace its origins; now it says how to change them."""
    runner.invoke(main, ["sites", "add", "blog", "--origin", "https://blog.example.com"])
    before = redis_client.hget("rx:sites", "blog")
    result = runner.invoke(main, ["sites", "add", "blog", "--origin", "https://other.example"])
    assert result.exit_code == 1
    assert "site 'blog' exists already (allows https://blog.example.com)" in result.output
    assert "reactions sites origins add blog ORIGIN" in result.output
    assert redis_client.hget("rx:sites", "blog") == before
    # the demo site is built in: adding it would have replaced its own origin
    demo = runner.invoke(main, ["sites", "add", "demo", "--origin", "https://x.example"])
    assert demo.exit_code == 1 and "site 'demo' exists already" in demo.output
    assert not redis_client.hexists("rx:sites", "demo")


def test_origins_are_added_and_removed_keeping_the_sites_reactions_and_age(runner, redis_client):
    runner.invoke(main, ["sites", "add", "blog", "--origin", "https://blog.example.com"])
    record = json.loads(redis_client.hget("rx:sites", "blog"))
    # The owner chose their own reaction set in the admin.
    record["reactions"] = [{"id": "love", "emoji": "\N{HEAVY BLACK HEART}", "label": "Love"}]
    redis_client.hset("rx:sites", "blog", json.dumps(record))

    added = runner.invoke(
        main,
        ["sites", "origins", "add", "blog", "https://WWW.example.com/", "https://blog.example.com"],
    )
    assert added.exit_code == 0, added.output
    assert "https://blog.example.com is allowed already." in added.output
    assert "Site 'blog' allows https://blog.example.com, https://www.example.com." in added.output

    removed = runner.invoke(
        main, ["sites", "origins", "remove", "blog", "https://blog.example.com"]
    )
    assert removed.exit_code == 0, removed.output
    assert "Site 'blog' allows https://www.example.com." in removed.output
    after = json.loads(redis_client.hget("rx:sites", "blog"))
    assert after["origins"] == ["https://www.example.com"]
    assert after["reactions"] == record["reactions"]
    assert after["created"] == record["created"] > 0
    assert "blog\thttps://www.example.com" in runner.invoke(main, ["sites", "list"]).output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["remove", "blog", "https://blog.example.com", "https://www.example.com"], 1, "needs at least one origin; nothing changed"),
        (["remove", "blog", "https://www.example.com", "https://other.example"], 1, "does not allow https://other.example (it allows https://blog.example.com, https://www.example.com); nothing changed"),
        (["add", "blog", "https://new.example", "new.example"], 2, "must look like https://blog.example.com"),
        (["remove", "blog", "https://www.example.com/path"], 2, "must not have a path"),
        (["add", "blog"], 2, "Missing argument 'ORIGINS...'"),
        (["add", "shop", "https://shop.example"], 1, "no site 'shop': add it with 'reactions sites add'"),
        (["remove", "shop", "https://shop.example"], 1, "no site 'shop'"),
    ],
)  # fmt: skip
def test_origin_changes_that_cannot_be_made_change_nothing(
    runner, redis_client, args, code, message
):
    runner.invoke(
        main,
        ["sites", "add", "blog", "--origin", "https://blog.example.com", "--origin", "https://www.example.com"],
    )  # fmt: skip
    before = redis_client.hgetall("rx:sites")
    result = runner.invoke(main, ["sites", "origins", *args])
    assert result.exit_code == code
    assert message in " ".join(result.output.split())
    assert redis_client.hgetall("rx:sites") == before


@pytest.mark.parametrize(
    ("environment", "stored", "note"),
    [
        ("an-env-password-1", "", "password from REACTIONS_ADMIN_PASSWORD"),
        ("an-env-password-1", "a-stored-password-2", "password from REACTIONS_ADMIN_PASSWORD"),
        ("", "a-stored-password-2", "password set with 'reactions admin set-password'"),
        ("", "", "no admin password yet: run 'reactions admin set-password' or set REACTIONS_ADMIN_PASSWORD"),
    ],
)  # fmt: skip
def test_serve_says_where_the_admin_password_comes_from(
    runner, redis_server, environment, stored, note
):
    if stored:
        result = runner.invoke(main, ["admin", "set-password", "--password", stored])
        assert result.exit_code == 0, result.output
    conf = config.load({"REDIS_URL": redis_server.url, "REACTIONS_ADMIN_PASSWORD": environment})
    assert admin_password_note(conf, redis_server.url).startswith(note)


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


@pytest.mark.parametrize(
    ("name", "value"),
    [("REACTIONS_APPENDFSYNC", "sometimes"), ("REACTIONS_REDIS_PRIORITY", "highest")],
)
def test_invalid_config_names_the_variable(tmp_path, name, value):
    result = CliRunner(env={name: value}).invoke(main, ["sites", "list"])
    assert result.exit_code == 1 and name in result.output


def real_time_allowed() -> bool:
    """Whether this process may put another at real-time priority (root, CAP_SYS_NICE)."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        os.sched_setscheduler(child.pid, os.SCHED_FIFO, os.sched_param(1))
        return True
    except PermissionError:
        return False
    finally:
        child.kill()
        child.wait()


def threads_policies(pid: int) -> dict[int, int]:
    return {int(t): os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.skipif(not hasattr(os, "SCHED_FIFO"), reason="scheduling policies are Linux's")
def test_the_embedded_redis_runs_commands_at_real_time_priority_where_allowed(tmp_path):
    """Only its main thread, which runs every command; its background threads stay normal,
    and so does the fork that rewrites the append-only file (reset on fork). Where the
    system refuses, Redis runs at normal priority and the note says why."""
    with EmbeddedRedis(str(tmp_path), priority="realtime") as server:
        pid = server.process.pid
        policies = threads_policies(pid)
        assert answers(server.url)
        if real_time_allowed():
            assert server.priority_note == "real-time priority (SCHED_FIFO 1)"
            assert policies.pop(pid) == os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
            assert os.sched_getparam(pid).sched_priority == 1
        else:
            assert server.priority_note.startswith("normal priority (real-time not permitted")
            assert policies.pop(pid) == os.SCHED_OTHER
        assert policies and set(policies.values()) == {os.SCHED_OTHER}

    with EmbeddedRedis(str(tmp_path / "normal")) as server:
        assert server.priority_note == "normal priority"
        assert set(threads_policies(server.process.pid).values()) == {os.SCHED_OTHER}


@pytest.mark.skipif(not hasattr(os, "SCHED_FIFO"), reason="scheduling policies are Linux's")
def test_a_refused_real_time_priority_leaves_the_embedded_redis_running_normally(tmp_path):
    refused = PermissionError(1, "Operation not permitted")
    with (
        mock.patch("widget.embedded_redis.os.sched_setscheduler", side_effect=refused),
        EmbeddedRedis(str(tmp_path), priority="realtime") as server,
    ):
        assert answers(server.url)
        assert server.priority_note == (
            "normal priority (real-time not permitted: Operation not permitted)"
        )
        assert os.sched_getscheduler(server.process.pid) == os.SCHED_OTHER


def test_a_second_redis_on_one_data_directory_is_refused_and_the_first_named(tmp_path):
    with EmbeddedRedis(str(tmp_path)) as first:
        with pytest.raises(EmbeddedRedisError, match=rf"\(pid {first.process.pid}\): kill"):
            EmbeddedRedis(str(tmp_path)).start()
        assert answers(first.url)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gunicorn_pids(output: str) -> list[int]:
    """The arbiter's and the workers' process ids, from gunicorn's log."""
    return [
        int(pid)
        for pid in re.findall(r"Listening at: \S+ \((\d+)\)|Booting worker with pid: (\d+)", output)
        for pid in pid
        if pid
    ]


def test_a_stopping_server_ends_its_open_live_streams_at_once_and_opens_no_new_one(tmp_path):
    """gunicorn lets open requests finish before a worker stops; a live stream never finishes
    by itself, so the worker ends its streams as it begins to stop (the browser reconnects
    to a serving process) instead of holding the stop for the whole graceful timeout. The
    browser asks again at once, on the connection it kept alive to the same, stopping
    worker: that worker answers 503 (the widget retries later, reaching a serving process)
    rather than open a stream that nothing would end."""
    server = Server(tmp_path / "data").start()
    path = "/api/v1/stream?site=demo&article=stopping"
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", path)
        stream = connection.getresponse()
        while not stream.readline().startswith(b"data:"):
            pass
        server.process.send_signal(signal.SIGTERM)
        stream.read()  # the response ends; the connection stays open
        connection.request("GET", path)
        again = connection.getresponse()
        refused = json.loads(again.read())
        code = server.process.wait(timeout=30)
        server.drain.join(timeout=10)
    finally:
        if server.process.poll() is None:
            server.stop()
    output = "".join(server.output)
    assert (again.status, refused["error"]) == (503, "live_unavailable"), output
    assert code == 0, output
    assert "graceful timeout" not in output.lower(), output
    # The worker exits by itself; one the graceful timeout ran out on is killed, silently.
    assert "Worker exiting" in output, output


@pytest.mark.parametrize(
    ("signum", "whole_group"),
    [
        pytest.param(signal.SIGTERM, False, id="SIGTERM to serve (systemd, Docker)"),
        pytest.param(signal.SIGINT, False, id="SIGINT to serve (a process manager)"),
        # serve runs in a session of its own (as under setsid), so its group is what a
        # terminal's Ctrl-C reaches: serve, and whatever it did not put in another session.
        pytest.param(signal.SIGINT, True, id="Ctrl-C in a terminal"),
    ],
)
def test_serve_stops_on_a_signal_and_keeps_every_acknowledged_reaction(
    tmp_path, signum, whole_group
):
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        redis_pid = int((data / "redis.pid").read_text())
        for number in range(30):
            server.vote(f"reader-{number:03d}-zzzzzzzzzzzz", ["happy", "sad", "angry"][number % 3])
        server.vote("reader-000-zzzzzzzzzzzz", None)
        before = server.counts()
        if whole_group:
            os.killpg(server.process.pid, signum)
        else:
            server.process.send_signal(signum)
        code = server.process.wait(timeout=30)
        server.drain.join(timeout=10)
    finally:
        if server.process.poll() is None:
            server.stop()
    output = "".join(server.output)
    assert code == 0, output
    assert "Traceback" not in output and "SystemExit" not in output, output
    assert f"Demo page: {server.url}/demo" in output
    assert f"Admin: {server.url}/admin/ (no admin password yet: run" in output
    assert re.search(r"Embedded Redis: data in \S+, (real-time|normal) priority", output)
    assert "Embedded Redis stopped." in output
    processes = [redis_pid, *gunicorn_pids(output)]
    assert len(processes) == 3, output  # Redis, gunicorn's arbiter, one worker
    wait_until(lambda: not any(alive(pid) for pid in processes))
    assert (data / "appendonly.aof").stat().st_size > 0
    assert before["happy"] == 9 and before["sad"] == 10 and before["angry"] == 10

    again = Server(data).start()
    try:
        assert again.counts() == before
    finally:
        again.stop()


def test_a_second_ctrl_c_stops_serve_without_waiting_for_live_streams(tmp_path, redis_server):
    """A reader's open live stream holds a graceful stop for up to 5 s; the operator who
    presses Ctrl-C again does not wait for it."""
    server = Server(tmp_path / "unused", REDIS_URL=redis_server.url).start()
    stream = urllib.request.urlopen(
        f"{server.url}/api/v1/stream?site=demo&article=live", timeout=30
    )
    try:
        assert stream.status == 200 and stream.readline().strip()  # the stream is open
        os.killpg(server.process.pid, signal.SIGINT)
        wait_until(lambda: "Stopping: open requests" in "".join(server.output))
        os.killpg(server.process.pid, signal.SIGINT)
        code = server.process.wait(timeout=30)
        server.drain.join(timeout=10)
    finally:
        stream.close()
        if server.process.poll() is None:
            server.stop()
    output = "".join(server.output)
    assert code == 0, output
    assert "Traceback" not in output, output
    # gunicorn was stopped at once, before its arbiter could finish its graceful stop
    assert "Handling signal: term" in output and "Shutting down: Master" not in output
    gunicorn = gunicorn_pids(output)
    wait_until(lambda: not any(alive(pid) for pid in gunicorn))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_gunicorn_does_not_outlive_a_killed_serve(tmp_path, redis_server):
    """gunicorn runs outside serve's process group, so a kill of that group (or of serve
    alone, by SIGKILL) no longer reaches it; it stops when serve dies all the same."""
    server = Server(tmp_path / "unused", REDIS_URL=redis_server.url).start()
    try:
        wait_until(lambda: len(gunicorn_pids("".join(server.output))) == 2)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        gunicorn = gunicorn_pids("".join(server.output))
        wait_until(lambda: not any(alive(pid) for pid in gunicorn))
    finally:
        if server.process.poll() is None:
            server.stop()


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
from unittest import mock

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
hooks["post_worker_init"](None)  # a second call must not wrap the class again

from gunicorn import util
from gunicorn.http import wsgi

print(wsgi.Response.__name__, wsgi.Response.__mro__[1].__name__)
print(util.write_error.__name__, util.write_error.__wrapped__.__module__)
"""


def test_a_worker_keeps_the_loaded_app_out_of_the_collectors_full_passes():
    result = subprocess.run(
        [sys.executable, "-c", FREEZE_CHECK, GUNICORN_CONF],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    counts, response_class, write_error = result.stdout.splitlines()
    loaded, frozen, still_scanned = map(int, counts.split())
    assert frozen >= loaded * 0.9
    assert still_scanned < loaded / 20
    assert response_class == "OneWriteResponse Response"
    assert write_error == "write_json_error gunicorn.util"  # wrapped once, around gunicorn's own


class RecordingSocket:
    def __init__(self, takes=None):
        self.writes = []
        self.takes = takes  # send() takes at most this many bytes, as a full buffer would

    def sendall(self, data):
        self.writes.append(bytes(data))

    def send(self, data):
        taken = bytes(data[: self.takes])
        self.writes.append(taken)
        return len(taken)


def written(response_class, method, status, headers, chunks, sock=None):
    """What a gunicorn response writes to its socket, write by write (on a fixed date, so
    that two calls compare)."""
    request = SimpleNamespace(version=(1, 1), method=method, should_close=lambda: False)
    sock = sock or RecordingSocket()
    with mock.patch.object(util, "http_date", lambda *when: "Fri, 27 Nov 2026 12:00:00 GMT"):
        response = response_class(request, sock, Config())
        response.start_response(status, headers)
        for chunk in chunks:
            response.write(chunk)
        response.close()
    return sock.writes


ONE_WRITE_RESPONSE = one_write_response(wsgi.Response)


def test_an_answer_with_its_length_goes_out_in_one_write_with_its_head():
    answer = ("GET", "200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")])
    gunicorns = written(wsgi.Response, *answer, [b'{"a": true}'])
    ours = written(ONE_WRITE_RESPONSE, *answer, [b'{"a": true}'])
    assert len(gunicorns) == 2 and gunicorns[1] == b'{"a": true}'
    assert ours == [b"".join(gunicorns)]
    # A socket that takes only part of it (its buffer is full): the rest follows.
    partly = written(ONE_WRITE_RESPONSE, *answer, [b'{"a": true}'], RecordingSocket(takes=40))
    assert len(partly) == 2 and len(partly[0]) == 40
    assert b"".join(partly) == b"".join(gunicorns)


@pytest.mark.parametrize(
    ("method", "status", "headers", "chunks"),
    [
        # a stream: chunked, written as it comes
        (
            "GET",
            "200 OK",
            [("Content-Type", "text/event-stream")],
            [b"data: 1\n\n", b"data: 2\n\n"],
        ),
        ("HEAD", "200 OK", [("Content-Length", "11")], [b'{"a": true}']),  # no body on HEAD
        ("GET", "304 Not Modified", [("ETag", '"x"')], []),
        ("GET", "200 OK", [("Content-Length", "6")], [b"abc", b"def"]),  # a body in pieces
        ("GET", "200 OK", [("Content-Length", "0")], []),
    ],
)
def test_any_other_answer_is_written_as_gunicorn_writes_it(method, status, headers, chunks):
    ours = written(ONE_WRITE_RESPONSE, method, status, headers, chunks)
    assert ours == written(wsgi.Response, method, status, headers, chunks)


def test_a_subclass_that_frames_bodies_its_own_way_keeps_gunicorns_write():
    """As HTTP/2's response does: it subclasses gunicorn's and frames the body itself."""

    def framed(response_class):
        class Framed(response_class):
            def _emit_body(self, data):
                self.sock.sendall(b"<frame>" + data)

        return Framed

    answer = ("GET", "200 OK", [("Content-Length", "11")], [b'{"a": true}'])
    assert written(framed(ONE_WRITE_RESPONSE), *answer) == written(framed(wsgi.Response), *answer)


class RawConnection:
    """HTTP/1.1 over one socket and one buffer, so that a byte too many or too few in an
    answer spoils the next one (http.client reads each answer with a new buffer)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.host = f"127.0.0.1:{port}"
        self.buffer = b""

    def ask(self, method, path, body=b"", **headers):
        headers = {"Host": self.host, "User-Agent": BROWSER_UA, **headers}
        if body:
            headers["Content-Length"] = str(len(body))
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self.receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        assert re.fullmatch(r"HTTP/1\.1 \d{3} .*", status_line), status_line
        status = int(status_line.split()[1])
        fields = dict(line.split(": ", 1) for line in lines)
        length = 0 if method == "HEAD" or status == 304 else int(fields["Content-Length"])
        while len(self.buffer) < length:
            self.receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, fields, body

    def receive(self):
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        self.buffer += data

    def rest(self):
        """Whatever the server sends after its last answer, until it closes."""
        while data := self.sock.recv(65536):
            self.buffer += data
        return self.buffer


def test_serve_answers_one_after_another_on_a_kept_alive_connection(tmp_path):
    """Each answer's head and body, in one write or not, end exactly where the next begins."""
    server = Server(tmp_path / "data").start()
    connection = RawConnection(server.port)
    counts = "/api/v1/reactions?site=demo&article=kept"
    vote = {"site": "demo", "article": "kept", "reader": "reader-kept-zzzzzzzzz", "reaction": "sad"}
    try:
        status, _, body = connection.ask(
            "POST", "/api/v1/reactions", json.dumps(vote).encode(),
            **{"Content-Type": "application/json", "Origin": server.url},
        )  # fmt: skip
        assert status == 200 and json.loads(body)["mine"] == "sad"
        status, fields, body = connection.ask("GET", counts)
        assert status == 200 and json.loads(body)["total"] == 1
        revalidated = connection.ask("GET", counts, **{"If-None-Match": fields["ETag"]})
        assert revalidated[::2] == (304, b"")
        assert connection.ask("HEAD", counts)[::2] == (200, b"")
        status, _, body = connection.ask("GET", "/embed.js")
        assert status == 200 and b"emoji-reactions" in body
        status, _, body = connection.ask("GET", counts, Connection="close")
        assert status == 200 and json.loads(body)["total"] == 1
        assert connection.rest() == b""
    finally:
        connection.sock.close()
        code, output = server.stop()
    assert code == 0, output
