"""How `reactions serve` runs the server: gunicorn in its own session with the app's hooks,
and the embedded Redis supervised, restarted whenever it dies."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from . import logs, metrics
from .embedded_redis import EmbeddedRedis, EmbeddedRedisError, stop_with_parent

GUNICORN_CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gunicorn_conf.py")
# How often serve checks that the embedded Redis still runs, and how long it waits before
# each try to restart it; a Redis that ran STABLE_SECONDS since is healthy again.
SUPERVISE_INTERVAL = 0.2
RESTART_DELAYS = (0.25, 0.5, 1, 2, 4, 8)
STABLE_SECONDS = 60


def supervise(server: subprocess.Popen, embedded: EmbeddedRedis | None, stopping: list) -> int:
    """Wait for gunicorn to exit and return its status. Meanwhile restart the embedded Redis
    whenever it dies (its AOF keeps every acknowledged vote), waiting longer after each
    failed try; when the last try fails, stop with status 1, for the process manager to
    restart the whole server."""
    if embedded is None:
        return server.wait()
    tries = 0
    running_since = time.monotonic()
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return server.wait(timeout=SUPERVISE_INTERVAL)
        status = embedded.exited()
        if stopping:
            continue
        if status is None:
            if tries and time.monotonic() - running_since > STABLE_SECONDS:
                tries = 0
            continue
        how = f"signal {signal.Signals(-status).name}" if status < 0 else f"status {status}"
        if tries == len(RESTART_DELAYS):
            logs.event(
                "redis.embedded_failed",
                f"Embedded Redis exited ({how}) and {tries} restarts failed: stopping, "
                "for the process manager to restart the server.",
                logging.CRITICAL,
            )
            return 1
        delay = RESTART_DELAYS[tries]
        tries += 1
        logs.event(
            "redis.embedded_lost",
            f"Embedded Redis exited ({how}); restarting it in {delay} s "
            f"(try {tries} of {len(RESTART_DELAYS)}).",
            logging.ERROR,
        )
        with contextlib.suppress(subprocess.TimeoutExpired):
            return server.wait(timeout=delay)
        if stopping:
            continue
        try:
            embedded.start()
        except EmbeddedRedisError as error:
            logs.event(
                "redis.embedded_failed", f"Embedded Redis did not restart: {error}", logging.ERROR
            )
            continue
        running_since = time.monotonic()
        if os.environ.get(metrics.MULTIPROC_DIR):
            metrics.embedded_redis_restarted(os.environ[metrics.MULTIPROC_DIR])
        logs.event("redis.embedded_back", f"Embedded Redis restarted: data in {embedded.data_dir}.")


def fresh_metrics_dir(env: dict) -> str:
    """An empty directory for the workers' metrics files (prometheus_client's multiprocess
    mode): `metrics` in the data directory when there is one, else a new temporary one.
    Emptied at each start, since the figures of a previous run's workers must not count; a
    temporary one is removed when `reactions serve` exits."""
    data_dir = os.path.abspath(env.get("REACTIONS_DATA_DIR") or "var")
    if os.path.isdir(data_dir):
        path = os.path.join(data_dir, "metrics")
        shutil.rmtree(path, ignore_errors=True)
        try:
            os.mkdir(path, 0o700)
            return path
        except OSError:
            pass
    path = tempfile.mkdtemp(prefix="reactions-metrics-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def start_gunicorn(
    host: str,
    port: int,
    workers: int,
    worker_class: str,
    connections: int,
    threads: int,
    env: dict,
) -> subprocess.Popen:
    """gunicorn in its own session: a terminal's Ctrl-C reaches `reactions serve` alone,
    which stops gunicorn with SIGTERM (graceful). gunicorn's own SIGINT is a quick shutdown
    that makes gevent workers print a SystemExit traceback.

    The workers' metrics go to a fresh directory, named in this process's environment too,
    where `supervise` counts the embedded Redis's restarts."""
    env[metrics.MULTIPROC_DIR] = os.environ[metrics.MULTIPROC_DIR] = fresh_metrics_dir(env)
    args = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--worker-class", worker_class,
        "--worker-connections", str(connections),
        "--threads", str(threads),
        "--graceful-timeout", "5",
        "--no-control-socket",
        "--config", f"file:{GUNICORN_CONF}",
        "widget:create_app()",
    ]  # fmt: skip
    return subprocess.Popen(
        args, env=env, start_new_session=True, preexec_fn=stop_with_parent(os.getpid())
    )


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except OSError:
            time.sleep(0.1)
    return False
