"""Gunicorn settings that `reactions serve` (and bench/http) load with `--config file:…`.

Loaded as a file, not as `widget.…`: importing the package would import ssl and redis in the
arbiter before the gevent worker patches them.

gevent workers hand the CPU to another connection only when a greenlet waits on I/O. On a
keep-alive connection whose next request has already arrived, and whose handler never waits
(a cached read, the script), a greenlet runs request after request and the other
connections of its process queue behind it. Measured with wrk at 32 connections on 2 cores:
`GET /embed.js` had p50 0.6 ms but p99 390–490 ms.

`sleep(0)` after each request was not enough: gevent runs such callbacks again before it
polls for I/O, and strace showed a worker serving one connection for 60 ms at a time before
it accepted the next one (p99 still 90–290 ms). A timer makes the loop poll first, so every
ready connection, new ones included, gets its turn: p99 16–19 ms at the same throughput.
A request that already waited (a vote waits for Redis) gave the others their turn then, and
skips it.
"""

from __future__ import annotations

import gc
import sys

# Any timer will do: it expires on the event loop's next pass, after the loop polled for I/O.
YIELD_SECONDS = 0.0001


def post_worker_init(worker) -> None:
    """The app is loaded: keep its 52,000 long-lived objects (modules, routes, clients) out of
    the garbage collector's full passes. One such pass stopped a loaded worker for 19 ms, and
    every connection of a gevent worker with it; after the freeze it takes under 0.1 ms."""
    gc.collect()
    gc.freeze()


def pre_request(worker, req) -> None:
    worker.log.debug("%s %s", req.method, req.path)  # what gunicorn's default hook does
    if worker_is_cooperative():
        req.reactions_loop_pass = loop_pass()


def post_request(worker, req, environ, resp) -> None:
    """Let the other ready connections of this process run before this one's next request,
    unless the event loop already ran while this request waited."""
    if worker_is_cooperative():
        started = getattr(req, "reactions_loop_pass", None)
        if started is None or started == loop_pass():
            from gevent import sleep

            sleep(YIELD_SECONDS)


def loop_pass() -> int | None:
    """How many times the event loop has polled (libev's default loop counts; else None)."""
    from gevent import get_hub

    return getattr(get_hub().loop, "iteration", None)


def worker_is_cooperative() -> bool:
    """True in a gevent worker: it patches the standard library as it starts."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")
