"""`reactions serve` when one of its parts fails: its embedded Redis is killed or cannot
start again, serve itself is killed, a client sends a malformed request."""

import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request

import pytest

from tests.servers import Server, wait_until
from tests.test_cli import gunicorn_pids

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's"
)


def running(pid: int) -> bool:
    """The process exists and is not a zombie left for its parent to collect."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def exists(pid: int) -> bool:
    """The process, or its zombie, is still in the process table."""
    return os.path.exists(f"/proc/{pid}")


def redis_pid(data) -> int:
    try:
        return int((data / "redis.pid").read_text())
    except (FileNotFoundError, ValueError):  # between runs, or while Redis writes it
        return 0


def answer(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def vote_a_few(server: Server) -> dict[str, int]:
    for number in range(20):
        server.vote(f"reader-{number:03d}-zzzzzzzzzzzz", ["happy", "sad"][number % 2])
    return server.counts()


@linux_only
def test_a_killed_embedded_redis_is_restarted_with_every_acknowledged_vote(tmp_path):
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        before = vote_a_few(server)
        killed = redis_pid(data)

        os.kill(killed, signal.SIGKILL)

        wait_until(lambda: not exists(killed))  # serve collected it: no zombie is left
        wait_until(lambda: redis_pid(data) not in (0, killed), timeout=15)
        wait_until(lambda: answer(f"{server.url}/readyz")[0] == 200, timeout=15)
        assert server.counts() == before
        server.vote("reader-after-restart-zzzz", "happy")
        assert server.counts() == before | {"happy": before["happy"] + 1}
        assert answer(f"{server.url}/healthz") == (200, {"status": "ok", "redis": "ok"})
    finally:
        code, output = server.stop()
    assert code == 0, output
    assert "Embedded Redis exited (signal SIGKILL); restarting it in 0.25 s (try 1 of 6)." in output
    assert f"Embedded Redis restarted: data in {data}." in output


@linux_only
def test_serve_exits_with_status_1_when_its_redis_cannot_start_again(tmp_path):
    """A damaged append-only file: Redis refuses to load it at every try, and serve gives
    up, for the process manager to restart the server (and the operator to read why)."""
    data = tmp_path / "data"
    server = Server(data).start()
    try:
        vote_a_few(server)
        with open(data / "appendonly.aof", "ab") as aof:
            aof.write(b"not a command\r\n")

        os.kill(redis_pid(data), signal.SIGKILL)

        code = server.process.wait(timeout=60)
        server.drain.join(timeout=10)
    finally:
        if server.process.poll() is None:
            server.stop()
    output = "".join(server.output)
    assert code == 1, output
    assert output.count("Embedded Redis did not restart: redis-server exited with 1") == 6
    assert "and 6 restarts failed: stopping, for the process manager to restart" in output
    wait_until(lambda: not any(running(pid) for pid in gunicorn_pids(output)))


@linux_only
def test_after_kill_9_of_serve_and_gunicorn_the_next_serve_just_starts(tmp_path):
    data = tmp_path / "data"
    server = Server(data).start()
    redis, gunicorn = redis_pid(data), []
    try:
        before = vote_a_few(server)
        wait_until(lambda: len(gunicorn_pids("".join(server.output))) == 2)
        gunicorn = gunicorn_pids("".join(server.output))

        for pid in (server.process.pid, *gunicorn):
            os.kill(pid, signal.SIGKILL)

        server.process.wait(timeout=10)
        wait_until(lambda: not any(running(pid) for pid in (redis, *gunicorn)))
    finally:
        if server.process.poll() is None:
            server.stop()
        for pid in (redis, *gunicorn):  # what outlived serve, should this test fail
            if pid and running(pid):
                os.kill(pid, signal.SIGKILL)

    again = Server(data).start()
    try:
        assert again.counts() == before
    finally:
        code, output = again.stop()
    assert code == 0, output
    assert "another Redis already serves" not in output


AGENT = "Mozilla/5.0 (X11; Linux x86_64) OpsTestAgent/1.0"


def test_gunicorn_logs_no_client_address_or_agent(tmp_path, redis_server):
    """A malformed request gets a warning, and a good one an access log line (when an
    operator turns the access log on): neither names the client's address or agent."""
    server = Server(
        tmp_path / "unused", REDIS_URL=redis_server.url, GUNICORN_CMD_ARGS="--access-logfile -"
    ).start()
    try:
        # From an address of its own, which nothing else in the output could show.
        with socket.create_connection(
            ("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.2", 0)
        ) as client:
            client.sendall(b"NOT A REQUEST LINE\r\n\r\n")
            malformed = client.recv(1000)
        with socket.create_connection(
            ("127.0.0.1", server.port), timeout=5, source_address=("127.0.0.2", 0)
        ) as client:
            client.sendall(
                f"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: {AGENT}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            good = client.recv(1000)
        wait_until(lambda: '"GET /healthz HTTP/1.1" 200' in "".join(server.output))
    finally:
        code, output = server.stop()
    assert malformed.startswith(b"HTTP/1.1 400 Bad Request")
    assert good.startswith(b"HTTP/1.1 200 OK")
    (warning,) = [line for line in output.splitlines() if "Invalid request" in line]
    assert " WARNING gunicorn Invalid request: Invalid HTTP request line" in warning, warning
    assert "127.0.0.2" not in output and "OpsTestAgent" not in output
