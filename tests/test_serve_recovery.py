"""`reactions serve` when one of its parts fails: its embedded Redis is killed or cannot
start again, serve itself is killed, a client sends a malformed request."""

import os
import signal
import sys

import pytest

from tests.conftest import Server, wait_until
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


def redis_pid(data) -> int:
    try:
        return int((data / "redis.pid").read_text())
    except (FileNotFoundError, ValueError):  # between runs, or while Redis writes it
        return 0


def vote_a_few(server: Server) -> dict[str, int]:
    for number in range(20):
        server.vote(f"reader-{number:03d}-zzzzzzzzzzzz", ["happy", "sad"][number % 2])
    return server.counts()


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
