"""Gunicorn settings that `reactions serve` (and bench/http) load with `--config file:…`.

Loaded as a file, not as `widget.…`: importing the package would import ssl and redis in the
arbiter before the gevent worker patches them.

gevent workers hand the CPU to another connection only when a greenlet waits on I/O. On a
keep-alive connection whose next request has already arrived, and whose handler's Redis
replies come back before it reads them, a greenlet runs request after request without ever
waiting, and the other connections of its process queue behind it. Measured with wrk at 32
connections on 2 cores: `GET /embed.js` had p50 0.6 ms but p99 390–490 ms.

`sleep(0)` after each request was not enough: gevent runs such callbacks again before it
polls for I/O, and strace showed a worker serving one connection for 60 ms at a time before
it accepted the next one (p99 still 90–290 ms). A timer makes the loop poll first, so every
ready connection, new ones included, gets its turn: p99 16–19 ms at the same throughput.
"""

from __future__ import annotations

import sys

# Any timer will do: it expires on the event loop's next pass, after the loop polled for I/O.
YIELD_SECONDS = 0.0001


def post_request(worker, req, environ, resp) -> None:
    """Let the other ready connections of this process run before this one's next request."""
    if worker_is_cooperative():
        from gevent import sleep

        sleep(YIELD_SECONDS)


def worker_is_cooperative() -> bool:
    """True in a gevent worker: it patches the standard library as it starts."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")
