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
import json
import logging
import re
import sys
import time

from gunicorn import glogging

# Any timer will do: it expires on the event loop's next pass, after the loop polled for I/O.
YIELD_SECONDS = 0.0001


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


class AddressFreeLogger(glogging.Logger):
    """gunicorn's logger, without client addresses in its error log and without the
    address and user agent in an access log, should an operator turn one on."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        if not any(isinstance(f, WithoutClientAddresses) for f in self.error_log.filters):
            self.error_log.addFilter(WithoutClientAddresses())

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["h"] = atoms["a"] = "-"
        return atoms


logger_class = AddressFreeLogger


def post_worker_init(worker) -> None:
    """The app is loaded: keep its tens of thousands of long-lived objects (modules, routes,
    clients) out of the garbage collector's full passes, which otherwise stop a loaded worker,
    and every connection of a gevent worker with it, for milliseconds at a time.

    Answers go out in one write (see `one_write_response`), with a Date header formatted
    once a second (see `once_a_second`); gunicorn's own errors as JSON (see `json_errors`)."""
    from gunicorn import util
    from gunicorn.http import wsgi

    if not getattr(wsgi.Response, "one_write", False):
        wsgi.Response = one_write_response(wsgi.Response)
    if not getattr(util.http_date, "once_a_second", False):
        util.http_date = once_a_second(util.http_date)
    if not getattr(util.write_error, "json_errors", False):
        util.write_error = json_errors(util.write_error)
    gc.collect()
    gc.freeze()
    # Each worker listens for live updates from its start, not from its first read: a
    # worker that took only votes so far must still hear at once that a site's reaction
    # set changed (see widget/live.py).
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    # Streams may take only part of the process's connections (or threads): the rest
    # answers votes, reads and /healthz however many streams are asked for.
    if "reactions_live" in extensions:
        extensions["reactions_live"].start()
        threads = None if find_cooperative() else worker.cfg.threads
        extensions["reactions_live"].fit(worker.cfg.worker_connections, threads)


class _Head:
    """Stands in for the socket while gunicorn formats a response's head."""

    data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data


def one_write_response(base: type) -> type:
    """gunicorn's response class, sending a body that comes whole (a Content-Length and one
    bytes chunk, as Flask sends any response made from bytes) in the same write as its head.

    gunicorn writes the head, then the body: two TCP segments, the client woken twice, and
    more context switches and CPU per vote on both sides (measured: see docs/benchmarks.md,
    "One write per response"). Anything else goes through gunicorn's own write, unchanged,
    and so does the head itself: gunicorn formats it as always, into `_Head` instead of the
    socket."""

    class OneWriteResponse(base):
        one_write = True

        def write(self, arg):
            if (
                type(self) is not OneWriteResponse  # a subclass frames bodies its own way
                or self.headers_sent
                # HEAD, 204, 304: no body (a gunicorn without this flag keeps its own write)
                or getattr(self, "_omits_body", True)
                or type(arg) is not bytes
                # no Content-Length (chunked), or a body in pieces
                or self.response_length != len(arg)
            ):
                return super().write(arg)
            sock, self.sock = self.sock, _Head()
            try:
                self.send_headers()
                head = self.sock.data
            finally:
                self.sock = sock
            self.sent += len(arg)
            data = head + arg
            # One send() takes an answer this size whole. gevent's sendall() would first ask
            # the kernel for the socket's buffer size, a system call, and set up a deadline.
            sent = sock.send(data)
            if sent < len(data):
                sock.sendall(data[sent:])

    OneWriteResponse.__qualname__ = OneWriteResponse.__name__
    return OneWriteResponse


def once_a_second(http_date):
    """gunicorn's Date header, formatted once a second instead of for every answer: the text
    is the same all second, and formatting it was a few percent of a small answer's work.
    The header shows whole seconds, so the text is what gunicorn would have written."""
    last = [-1, ""]

    def cached(timestamp=None):
        if timestamp is not None:
            return http_date(timestamp)
        second = int(time.time())
        if second != last[0]:
            last[:] = second, http_date(second)
        return last[1]

    cached.once_a_second = True
    cached.__wrapped__ = http_date
    return cached


# What a client can do about gunicorn's own refusals, which come before the app sees a request.
GUNICORN_ERROR_DETAILS = {
    414: "the request line is too long: ask for fewer or shorter articles per request",
    431: "the request headers are too many or too long",
}


def json_errors(write_error):
    """gunicorn's answers to a request it cannot read (a request line over its limit: 414,
    headers over theirs: 431, a malformed request: 400) as the app's JSON `{error, detail}`
    instead of an HTML page: the widget and API clients read JSON."""

    def write_json_error(sock, status_int, reason, mesg):
        body = json.dumps(
            {
                "error": reason.lower().replace(" ", "_"),
                "detail": GUNICORN_ERROR_DETAILS.get(status_int) or mesg or reason,
            }
        ).encode()
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            "Cache-Control: no-store\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        util.write_nonblock(sock, head + body)

    from gunicorn import util

    write_json_error.json_errors = True
    write_json_error.__wrapped__ = write_error
    return write_json_error


def pre_request(worker, req) -> None:
    worker.log.debug("%s %s", req.method, req.path)  # what gunicorn's default hook does
    cooperative = find_cooperative()
    if cooperative:
        req.reactions_loop_pass = getattr(cooperative[0], "iteration", None)


def post_request(worker, req, environ, resp) -> None:
    """Let the other ready connections of this process run before this one's next request,
    unless the event loop already ran while this request waited."""
    cooperative = find_cooperative()
    if cooperative:
        loop, sleep = cooperative
        started = getattr(req, "reactions_loop_pass", None)
        # libev's loop counts its passes; without that count, always let the others run
        if started is None or started == getattr(loop, "iteration", None):
            sleep(YIELD_SECONDS)


# (gevent's event loop, gevent.sleep) in a gevent worker, False under threads; found at the
# process's first request.
_cooperative: tuple | bool | None = None


def find_cooperative() -> tuple | bool:
    """Found once per process rather than at each of the two hooks of every request (an
    import, gevent's monkey-patch check). Under threads gevent is never imported."""
    global _cooperative
    if _cooperative is None:
        monkey = sys.modules.get("gevent.monkey")
        if monkey is not None and monkey.is_module_patched("socket"):
            from gevent import get_hub, sleep

            _cooperative = (get_hub().loop, sleep)
        else:
            _cooperative = False
    return _cooperative
