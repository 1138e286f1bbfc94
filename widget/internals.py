"""Every place the app relies on a dependency's private internals, fenced off here.

Each patch says what it relies on (its `CONTRACT`), the measured gain that pays for it, and
falls back to the dependency's stock behaviour when the installed version no longer has
those internals: `missing()` lists what is gone, the patch is then not installed, and a
warning says so. `tests/test_internals.py` checks every contract against the installed
versions and fails, naming what is gone, before a release can misbehave. The dependencies
patched here are capped below their next major version in pyproject.toml.

Patches worth less than about 5% of a request's cost were dropped (docs/benchmarks.md,
"Dropped: private internals").
"""

from __future__ import annotations

import json
import logging
import socket

import redis
from redis.cluster import NodesManager
from redis.exceptions import ClusterDownError, SlotNotCoveredError

log = logging.getLogger(__name__)


def missing(obj: object, names: tuple[str, ...]) -> list[str]:
    """The names in `names` (dotted paths from `obj`) that `obj` does not have."""
    gone = []
    for name in names:
        target = obj
        for part in name.split("."):
            if not hasattr(target, part):
                gone.append(name)
                break
            target = getattr(target, part)
    return gone


# gunicorn ---------------------------------------------------------------------------------

# What `one_write_response` uses of gunicorn.http.wsgi.Response, and `json_errors` of
# gunicorn.util. Attributes set in Response.__init__ are checked on an instance.
GUNICORN_RESPONSE_CONTRACT = (
    "write",
    "send_headers",
    "headers_sent",
    "response_length",
    "sent",
    "sock",
    "_omits_body",
    "_emit_body",
    "chunked",
)
GUNICORN_UTIL_CONTRACT = ("write_error", "write_nonblock")


# gunicorn's worker sets `alive` to False when it begins a graceful stop.
GUNICORN_WORKER_CONTRACT = ("alive",)


def worker_stopping(worker) -> bool:
    """Whether the gunicorn worker has begun to stop; False when it cannot tell (then its
    open streams last until the graceful timeout: gunicorn's own behaviour)."""
    return not getattr(worker, "alive", True)


def gunicorn_missing() -> list[str]:
    """What `patch_gunicorn` relies on and the installed gunicorn lacks."""
    from types import SimpleNamespace

    from gunicorn import util
    from gunicorn.config import Config
    from gunicorn.http import wsgi
    from gunicorn.workers.base import Worker

    request = SimpleNamespace(version=(1, 1), method="GET", should_close=lambda: False)
    response = wsgi.Response(request, None, Config())
    gone = [
        f"gunicorn.http.wsgi.Response.{n}" for n in missing(response, GUNICORN_RESPONSE_CONTRACT)
    ]
    worker = Worker(0, 0, [], None, 30, Config(), logging.getLogger(__name__))
    gone += [f"gunicorn.workers.base.Worker.{n}" for n in missing(worker, GUNICORN_WORKER_CONTRACT)]
    return gone + [f"gunicorn.util.{n}" for n in missing(util, GUNICORN_UTIL_CONTRACT)]


def patch_gunicorn() -> bool:
    """In a gunicorn worker: answers in one write (`one_write_response`) and gunicorn's own
    errors as JSON (`json_errors`). False, with a warning, when the installed gunicorn no
    longer has what they rely on: gunicorn then answers as it always does."""
    gone = gunicorn_missing()
    if gone:
        log.warning(
            "gunicorn %s lacks %s: answers go out as gunicorn writes them (two writes, "
            "HTML error pages)",
            _version("gunicorn"),
            ", ".join(gone),
        )
        return False
    from gunicorn import util
    from gunicorn.http import wsgi

    if not getattr(wsgi.Response, "one_write", False):
        wsgi.Response = one_write_response(wsgi.Response)
    if not getattr(util.write_error, "json_errors", False):
        util.write_error = json_errors(util.write_error)
    return True


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
                # HEAD, 204, 304: no body
                or self._omits_body
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

        def _emit_body(self, data):
            # A chunk of a stream (a live event, written to each of thousands of streams):
            # one send() as well, framed as gunicorn frames it, without sendall()'s system
            # call per write (measured: see docs/benchmarks.md, "10,000 live streams").
            if not self.chunked or type(self) is not OneWriteResponse:
                return super()._emit_body(data)
            chunk = b"%X\r\n%s\r\n" % (len(data), data)
            sent = self.sock.send(chunk)
            if sent < len(chunk):
                self.sock.sendall(chunk[sent:])

    OneWriteResponse.__qualname__ = OneWriteResponse.__name__
    return OneWriteResponse


# What a client can do about gunicorn's own refusals, which come before the app sees a request.
GUNICORN_ERROR_DETAILS = {
    414: "the request line is too long: ask for fewer or shorter articles per request",
    431: "the request headers are too many or too long",
}


def json_errors(write_error):
    """gunicorn's answers to a request it cannot read (a request line over its limit: 414,
    headers over theirs: 431, a malformed request: 400) as the app's JSON `{error, detail}`
    instead of an HTML page: the widget and API clients read JSON. Not a speed-up: the
    API's promise that every error is JSON."""
    from gunicorn import util

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

    write_json_error.json_errors = True
    write_json_error.__wrapped__ = write_error
    return write_json_error


# gevent -----------------------------------------------------------------------------------

# libev's loop counts its passes; gevent's libuv loop does not (then the worker always yields
# after a request: the stock behaviour of the fairness hook, a little more work).
GEVENT_LOOP_CONTRACT = ("iteration",)


def loop_passes(loop) -> int | None:
    """How many passes gevent's event loop has made, or None when the loop does not say."""
    return getattr(loop, "iteration", None)


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# redis-py ---------------------------------------------------------------------------------

# What the app reads of a redis-py connection: its socket (`_sock`), its parser (`_parser`)
# and, with hiredis, the parser's reader and its one read of the socket; and the method that
# opens the socket (`_connect`), whose timeout `ShorterConnect` shortens.
REDIS_CONNECTION_CONTRACT = ("_sock", "_parser", "_connect")
# The parser makes its `_reader` when the connection connects: tests/test_internals.py
# checks it on a connected connection.
HIREDIS_PARSER_CONTRACT = ("read_from_socket",)
# The class attribute redis-py's cluster client reads (`type(error) in …`) to decide which
# errors a command is retried after.
REDIS_CLUSTER_CONTRACT = ("ERRORS_ALLOW_RETRY",)
# How the cluster client makes a client of one node, which the live subscription copies.
NODES_MANAGER_CONTRACT = ("connection_kwargs", "remap_host_port", "create_redis_node")


def connection_socket(connection) -> socket.socket | None:
    """The connection's socket, None when it has none (or redis-py no longer keeps it
    where it did: the callers then leave the work to redis-py)."""
    return getattr(connection, "_sock", None)


def hiredis_reader(connection):
    """The hiredis reader that holds the replies the connection has received, or None (no
    hiredis, or a redis-py that keeps it elsewhere)."""
    parser = getattr(connection, "_parser", None)
    if not hasattr(parser, "read_from_socket"):
        return None
    return getattr(parser, "_reader", None)


def read_into_reader(connection) -> None:
    """One read of the socket into the hiredis reader (only after `hiredis_reader` gave one)."""
    connection._parser.read_from_socket()


class ShorterConnect:
    """Opens the socket within what is left of the call's deadline (`time_left()`, seconds
    or None) when that is less than the configured connect timeout: a call must not wait
    its whole timeout again for a reconnect. Without `_connect` in redis-py this override is
    never called, and a connect takes the configured timeout: redis-py's own behaviour."""

    @staticmethod
    def time_left() -> float | None:
        return None

    def _connect(self):
        left = self.time_left()
        if left is None or (self.socket_connect_timeout or float("inf")) <= left:
            return super()._connect()
        configured = self.socket_connect_timeout
        self.socket_connect_timeout = left
        try:
            return super()._connect()
        finally:
            self.socket_connect_timeout = configured


def redis_missing() -> list[str]:
    """What the app relies on of redis-py (and hiredis) that the installed versions lack.
    A connection's attributes are checked on a connection made (not connected)."""
    connection = redis.Connection(protocol=2)
    gone = [f"redis.Connection.{n}" for n in missing(connection, REDIS_CONNECTION_CONTRACT)]
    parser = getattr(connection, "_parser", None)
    gone += [f"redis hiredis parser.{n}" for n in missing(parser, HIREDIS_PARSER_CONTRACT)]
    gone += [f"redis.RedisCluster.{n}" for n in missing(redis.RedisCluster, REDIS_CLUSTER_CONTRACT)]
    methods = tuple(n for n in NODES_MANAGER_CONTRACT if n != "connection_kwargs")
    gone += [f"redis.cluster.NodesManager.{n}" for n in missing(NodesManager, methods)]
    return gone


def cluster_node_client(cluster, host: str, port: int):
    """A client of one node of `cluster` (a redis.RedisCluster), made as the cluster client
    makes its own (its connection settings, no retry), but not shared with it. Falls back to a
    plain client with the cluster's connection settings when redis-py no longer makes its
    nodes' clients that way."""
    manager = cluster.nodes_manager
    settings = getattr(manager, "connection_kwargs", None) or {}
    if not missing(manager, NODES_MANAGER_CONTRACT):
        host, port = manager.remap_host_port(host, port)
        return manager.create_redis_node(host, port, **settings)
    keep = ("password", "username", "socket_timeout", "socket_connect_timeout", "protocol",
            "decode_responses", "connection_class")  # fmt: skip
    kept = {name: value for name, value in settings.items() if name in keep}
    return redis.Redis(connection_pool=redis.ConnectionPool(host=host, port=port, **kept))


def cluster_socket_timeout(cluster) -> float | None:
    """The socket timeout the cluster client's nodes use, or None if it cannot be told."""
    settings = getattr(cluster.nodes_manager, "connection_kwargs", None) or {}
    return settings.get("socket_timeout")


class ClusterClient(redis.RedisCluster):
    """redis-py's cluster client, retrying a command or script as the app's single-Redis
    client does: after a dropped connection (redis-py first asks the cluster for its slots
    again, which finds a promoted replica), not after a timeout, when the node is stalled and
    a retry would wait the timeout again: a call to a stalled master took twice the timeout
    (see docs/benchmarks.md, "Redis connections per process"). Pipelines keep redis-py's
    rule. Without `ERRORS_ALLOW_RETRY` in redis-py this attribute is read by nothing, and
    redis-py's own rule applies to every call."""

    ERRORS_ALLOW_RETRY = (redis.ConnectionError, ClusterDownError, SlotNotCoveredError)
