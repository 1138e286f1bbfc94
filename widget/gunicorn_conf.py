"""Gunicorn settings that `reactions serve` (and bench/http) load with `--config file:…`.

Loaded as a file, not as `widget.…`: importing the package would import ssl and redis in the
arbiter before the gevent worker patches them.

gevent workers hand the CPU to another connection only when a greenlet waits on I/O. On a
keep-alive connection whose next request has already arrived, and whose handler never waits
(a cached read, the script), a greenlet runs request after request and the other
connections of its process queue behind it, which made the slowest answers hundreds of
times slower than the median.

After each request a short timer lets the others run. `sleep(0)` is not enough: gevent runs
such callbacks again before it polls for I/O, so a worker still served one connection for a
long stretch before it accepted the next. A timer makes the loop poll first, so every ready
connection, new ones included, gets its turn, at the same throughput (measured: see
docs/benchmarks.md, "Yield after each request"). A request that already waited (a vote
waits for Redis) gave the others their turn then, and skips it.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import re
import sys
import threading
import time

from gunicorn import glogging

# Any timer will do: it expires on the event loop's next pass, after the loop polled for I/O.
YIELD_SECONDS = 0.0001
# How often a worker looks whether it has begun to stop (its open streams then end).
STOP_CHECK_SECONDS = 0.2


# gunicorn's warning for a malformed request: "Invalid request from ip=ADDRESS: error".
CLIENT_ADDRESS = re.compile(r" from ip=.*?: ")


class WithoutClientAddresses(logging.Filter):
    """Takes the client's address out of gunicorn's log lines: raw addresses are never
    logged. The message is formatted before it is logged, so it is rewritten here."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "ip=" in message:
            record.msg, record.args = CLIENT_ADDRESS.sub(": ", message), ()
        return True


def load_logs():
    """widget/logs.py by its path (it needs only the standard library): the app's log format."""
    spec = importlib.util.spec_from_file_location(
        "reactions_logs", os.path.join(os.path.dirname(os.path.abspath(__file__)), "logs.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class AddressFreeLogger(glogging.Logger):
    """gunicorn's logger, without client addresses in its error log and without the
    address and user agent in an access log, should an operator turn one on. Its error log
    has the app's format (REACTIONS_LOG_FORMAT), so that a collector reads every line."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        if not any(isinstance(f, WithoutClientAddresses) for f in self.error_log.filters):
            self.error_log.addFilter(WithoutClientAddresses())
        log_format = load_logs().formatter(os.environ.get("REACTIONS_LOG_FORMAT", "plain"))
        for handler in self.error_log.handlers:
            handler.setFormatter(log_format)

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["h"] = atoms["a"] = "-"
        return atoms


logger_class = AddressFreeLogger


def post_worker_init(worker) -> None:
    """The app is loaded: keep its tens of thousands of long-lived objects (modules, routes,
    clients) out of the garbage collector's full passes, which otherwise stop a loaded worker,
    and every connection of a gevent worker with it, for milliseconds at a time.

    Answers go out in one write, gunicorn's own errors as JSON (widget/internals.py: each
    falls back to gunicorn's own behaviour if the installed gunicorn changed)."""
    from widget import internals  # the worker has imported the app, and the package with it

    internals.patch_gunicorn()
    gc.collect()
    gc.freeze()
    # Each worker listens for live updates from its start, not from its first read: a
    # worker that took only votes so far must still hear at once that a site's reaction
    # set changed (see widget/live.py).
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    # Streams may take only part of the process's connections (or threads): the rest
    # answers votes, reads and /healthz however many streams are asked for.
    if "reactions_live" in extensions:
        hub = extensions["reactions_live"]
        hub.start()
        threads = None if find_cooperative() else worker.cfg.threads
        hub.fit(worker.cfg.worker_connections, threads)
        threading.Thread(
            target=end_streams_when_stopping, args=(worker, hub), name="reactions-stop", daemon=True
        ).start()


def end_streams_when_stopping(worker, hub) -> None:
    """When the worker begins a graceful stop, its open live streams end at once: gunicorn
    waits for every open request, and a stream, which never finishes by itself, held each
    stop for the whole graceful timeout. The browsers reconnect to a serving process."""
    from widget.internals import worker_stopping

    while not worker_stopping(worker):
        time.sleep(STOP_CHECK_SECONDS)
    hub.end_streams()


def child_exit(server, worker) -> None:
    """A worker's live figures (its open streams) go with it; its counts stay in the sum."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def pre_request(worker, req) -> None:
    worker.log.debug("%s %s", req.method, req.path)  # what gunicorn's default hook does
    cooperative = find_cooperative()
    if cooperative:
        loop, _, passes = cooperative
        req.reactions_loop_pass = passes(loop)


def post_request(worker, req, environ, resp) -> None:
    """Let the other ready connections of this process run before this one's next request,
    unless the event loop already ran while this request waited."""
    cooperative = find_cooperative()
    if cooperative:
        loop, sleep, passes = cooperative
        started = getattr(req, "reactions_loop_pass", None)
        # Without a count of the loop's passes, always let the others run.
        if started is None or started == passes(loop):
            sleep(YIELD_SECONDS)


# (gevent's event loop, gevent.sleep, internals.loop_passes) in a gevent worker, False under
# threads; found at the process's first request.
_cooperative: tuple | bool | None = None


def find_cooperative() -> tuple | bool:
    """Found once per process rather than at each of the two hooks of every request (an
    import, gevent's monkey-patch check). Under threads gevent is never imported."""
    global _cooperative
    if _cooperative is None:
        monkey = sys.modules.get("gevent.monkey")
        if monkey is not None and monkey.is_module_patched("socket"):
            from gevent import get_hub, sleep

            from widget.internals import loop_passes

            _cooperative = (get_hub().loop, sleep, loop_passes)
        else:
            _cooperative = False
    return _cooperative
