"""The Redis client `connect(url)` builds for each mode, with its connections and pools.

Every call fails fast, within one deadline, with a redis-py error, and waits within the same
deadline for a free connection when all are busy."""

from __future__ import annotations

import functools
import queue
import select
import socket
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from ..internals import ClusterClient, ShorterConnect, connection_socket, hiredis_reader

# Redis connections of a process's pool: to its Redis, to the master a Sentinel group names,
# or to each master of a cluster (a pool per node). A call waits for a free one.
MAX_CONNECTIONS = 64


@functools.cache
def _kernel_poll() -> Callable[[], object] | None:
    """The operating system's poll(), even in a gevent worker whose `select` is patched."""
    if "gevent" in sys.modules:
        from gevent import monkey

        return monkey.get_original("select", "poll")
    return getattr(select, "poll", None)


class QuickReadinessCheck:
    """redis-py asks a connection whether bytes wait on it before every command (a reply left
    by an interrupted command would answer the next one), and the live listener asks it, with a
    timeout, before every pub/sub message. In a gevent worker redis-py answers through gevent's
    emulated poll, twice for a message, which made a noticeable share of a vote's and of a
    live message's CPU. This asks the kernel's poll, and waits with a peek on the socket
    itself (measured: see docs/benchmarks.md, "Quick readiness check"). Anything readable
    counts, a closed socket too: the pool then reconnects, and a read raises ConnectionError,
    as with redis-py's own check."""

    def can_read(self, timeout: float | None = 0) -> bool:
        sock, poll = connection_socket(self), _kernel_poll()
        # Only hiredis's reader tells cheaply whether it holds bytes of its own.
        reader = hiredis_reader(self)
        if not sock or reader is None or poll is None or timeout is None:
            return super().can_read(timeout)
        if reader.has_data():
            return True
        poller = poll()
        poller.register(sock.fileno(), select.POLLIN)
        if poller.poll(0):
            return True
        return timeout > 0 and self._wait_readable(sock, timeout)

    def _wait_readable(self, sock: socket.socket, timeout: float) -> bool:
        previous = sock.gettimeout()
        sock.settimeout(timeout)
        try:
            sock.recv(1, socket.MSG_PEEK)  # b"" once closed: readable too
            return True
        except (TimeoutError, BlockingIOError):
            return False
        except OSError as error:
            self.disconnect()
            raise redis.ConnectionError(f"lost the Redis connection: {error}") from error
        finally:
            if connection_socket(self) is sock:
                sock.settimeout(previous)


# The monotonic time by which the Redis call under way in this thread or greenlet gives up,
# or None: outside a call, and for a pub/sub reader, which says how long it waits each time.
_call_deadline: ContextVar[float | None] = ContextVar("reactions_redis_deadline", default=None)
# A read this much shorter than the socket timeout is worth a shorter socket timeout; a call
# whose reply comes at once never pays for setting one.
DEADLINE_SLACK = 0.01


def _time_left() -> float | None:
    """Seconds left to the current call's deadline (None: no deadline); TimeoutError once
    it has passed."""
    deadline = _call_deadline.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise redis.TimeoutError("the Redis call ran out of time")
    return left


class BoundedConnection(ShorterConnect):
    """A connection that keeps two promises to the app, whatever redis-py does inside.

    Every wait (connect, handshake, health check, reply) ends by the deadline of the call
    it serves (see `DeadlinePool`), so a stalled Redis costs a call its timeout once, not a
    timeout per step and retry. And every failure is a `redis.RedisError`, which the app
    answers with a 503: redis-py 8 itself can raise AttributeError when a unix-socket
    connection times out (its error metrics read a TCP-only `host`)."""

    def connect(self):
        try:
            return super().connect()
        except redis.RedisError:
            raise
        except Exception as error:
            raise self._client_failure(error) from error

    # A reconnect opens its socket within what is left of the call's deadline.
    time_left = staticmethod(_time_left)

    def send_packed_command(self, command, check_health=True):
        try:
            return super().send_packed_command(command, check_health)
        except redis.RedisError:
            raise
        except Exception as error:
            raise self._client_failure(error) from error

    def read_response(self, *args, **kwargs):
        sock, deadline = connection_socket(self), _call_deadline.get()
        try:
            if sock is None or deadline is None or "timeout" in kwargs:
                return super().read_response(*args, **kwargs)
            left = deadline - time.monotonic()
            if self.socket_timeout is not None and left > self.socket_timeout - DEADLINE_SLACK:
                return super().read_response(*args, **kwargs)
            if left <= 0:
                self.disconnect()  # the command's reply would answer the next one
                raise redis.TimeoutError("the Redis call ran out of time")
            sock.settimeout(left)
            try:
                return super().read_response(*args, **kwargs)
            finally:
                if connection_socket(self) is sock:
                    sock.settimeout(self.socket_timeout)
        except redis.RedisError:
            raise
        except Exception as error:
            raise self._client_failure(error) from error

    def register_connect_callback(self, callback):
        # Only a pub/sub client registers one: it holds this connection for as long as it
        # listens and gives each read its own timeout, so the call that lent it ends here.
        _call_deadline.set(None)
        super().register_connect_callback(callback)

    def _client_failure(self, error: Exception) -> redis.ConnectionError:
        self.disconnect()
        return redis.ConnectionError(f"the Redis client failed: {type(error).__name__}: {error}")


class WaitingQueue(queue.LifoQueue):
    """The queue of free connections of a `DeadlinePool`. A wait that runs out raises
    MaxConnectionsError (a ConnectionError): a busy pool, not a failed Redis. redis-py's
    cluster client takes any other ConnectionError for a dead node and refreshes its map of
    the cluster (the blocking pool's own "No connection available." is one), which, under a
    burst, would send every waiting call to ask the cluster for its slots. (redis-py's
    blocking pool waits with `get(block=True, timeout=…)` on its `queue_class` and turns
    only queue.Empty into its own error.)"""

    def get(self, block: bool = True, timeout: float | None = None):
        try:
            return super().get(block, timeout)
        except queue.Empty:
            raise redis.MaxConnectionsError(
                f"no free Redis connection within {timeout} s (all {self.maxsize} busy)"
            ) from None


class DeadlinePool(redis.BlockingConnectionPool):
    """A bounded pool whose `timeout` is the whole time of one call (a command, a script, a
    pipeline): the wait for a free connection, a reconnect, a health check, the reply and a
    retry all share it. Otherwise, under a stall with every connection busy, a request would
    wait the timeout for a connection, then again for its reply, and again for the retry.

    The pool of one Redis, of a Sentinel master, and of each node of a cluster. (After a
    dropped connection, redis-py's cluster client asks the cluster for its slots again and
    retries with a connection of the right node's pool: one more deadline.)"""

    def __init__(self, *args, queue_class: type[queue.Queue] = WaitingQueue, **kwargs):
        super().__init__(*args, queue_class=queue_class, **kwargs)

    def get_connection(self, *args, **kwargs):
        _call_deadline.set(time.monotonic() + self.timeout)
        try:
            return super().get_connection(*args, **kwargs)
        except BaseException:
            _call_deadline.set(None)
            raise

    def release(self, connection):
        _call_deadline.set(None)
        super().release(connection)


class SentinelDeadlinePool(SentinelConnectionPool, DeadlinePool):
    """The pool of the master a Sentinel group names: redis-py's Sentinel pool (it asks the
    sentinels for the master's address at each connect, and drops connections to a former
    master when they come back) on a `DeadlinePool` instead of its non-blocking pool."""


class QuickConnection(BoundedConnection, QuickReadinessCheck):
    """A bounded connection with the quick readiness check."""


class QuickCheckConnection(QuickConnection, redis.Connection):
    """A TCP connection (`redis://`) with the quick readiness check."""


class QuickCheckUnixConnection(QuickConnection, redis.UnixDomainSocketConnection):
    """A unix-socket connection (`unix://`) with the quick readiness check."""

    # redis-py's error metrics read these, which only its TCP connection sets.
    @property
    def host(self) -> str:
        return self.path

    port = None


class BoundedSSLConnection(BoundedConnection, redis.SSLConnection):
    """TLS (`rediss://`) keeps redis-py's own readiness check: decrypted bytes may wait above
    the socket."""


class BoundedSentinelConnection(BoundedConnection, SentinelManagedConnection):
    """The connection to the master a Sentinel group names."""


CONNECTIONS = {
    "redis": QuickCheckConnection,
    "unix": QuickCheckUnixConnection,
    "rediss": BoundedSSLConnection,
    "redis+cluster": QuickCheckConnection,
    "rediss+cluster": BoundedSSLConnection,
    "redis+sentinel": BoundedSentinelConnection,
}
# Connections of a process to each sentinel, which it asks for the master's address.
SENTINEL_CONNECTIONS = 4
# A node of a `+cluster` or `+sentinel` URL without a port.
DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}


def retry_once() -> Retry:
    """One retry, after a dropped connection only (the vote script is idempotent, so a retry
    never double-counts): after a timeout Redis is stalled, and a retry would only wait the
    timeout again."""
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def seed_nodes(url: str) -> list[tuple[str, int]]:
    """The nodes a `redis+cluster://` URL (its seeds) or a `redis+sentinel://` URL (its
    sentinels) names: `host[:port]` or `[IPv6 address][:port]`, separated by commas, after
    an optional `user:password@`. ValueError says what is wrong with which node."""
    parts = urlsplit(url)  # ValueError for unbalanced brackets
    default_port = DEFAULT_PORTS[parts.scheme.rpartition("+")[2]]
    nodes = parts.netloc.rpartition("@")[2]
    if not nodes:
        raise ValueError("no node: name at least one as host:port")
    return [_node(seed.strip(), default_port) for seed in nodes.split(",")]


def _node(seed: str, default_port: int) -> tuple[str, int]:
    if seed.startswith("["):
        host, bracket, rest = seed[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"the node {seed!r} is not [IPv6 address]:port")
        port = rest[1:] if rest else None
    elif seed.count(":") > 1:
        raise ValueError(f"the node {seed!r} needs brackets around its IPv6 address")
    else:
        host, colon, port = seed.partition(":")
        port = port if colon else None
    if not host:
        raise ValueError(f"the node {seed!r} has no host" if seed else "an empty node in the list")
    if port is None:
        return host, default_port
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"the port of the node {seed!r} is not a number from 1 to 65535")
    return host, int(port)


def cluster_client(url: str, timeout: float, options: dict) -> ClusterClient:
    """redis-py's cluster client, seeded from every node the URL names: it starts when any
    of them answers. Each node's pool is a `DeadlinePool`."""
    parts = urlsplit(url)
    (host, port), *others = seed_nodes(url)
    userinfo = parts.netloc.rpartition("@")[0]
    first = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # redis-py reads one node from a URL, the others come as startup nodes. Its URL parser
    # would put its own TLS connection in place of ours for `rediss`: the connection class
    # of the options says TLS.
    seed = urlunsplit(
        ("redis", f"{userinfo}@{first}" if userinfo else first, parts.path, parts.query, "")
    )
    try:
        return ClusterClient(
            url=seed,
            startup_nodes=[ClusterNode(name, number) for name, number in others],
            # Each node's pool, built from these options: redis-py passes the keywords of
            # its list of allowed ones (REDIS_ALLOWED_KEYS, `timeout` among them) to the
            # pool class it is given (tests/test_redis_modes.py checks that they arrive).
            connection_pool_class=DeadlinePool,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            retry=retry_once(),
            # With slots of a dead master uncovered, start anyway: the other shards serve
            # their sites (the README's cluster-require-full-coverage no).
            require_full_coverage=False,
            **options,
        )
    except redis.RedisClusterException as error:
        # Not a RedisError: say it as one, which callers answer as "Redis unreachable".
        raise redis.ConnectionError(str(error)) from error


def sentinel_client(url: str, timeout: float, options: dict) -> redis.Redis:
    """A client of the master that the Sentinel group of the URL names, whose pool is a
    `SentinelDeadlinePool`."""
    parts = urlsplit(url)
    sentinel = Sentinel(
        [], socket_timeout=timeout, password=parts.password, ssl=parts.scheme.startswith("rediss")
    )
    # Each new connection to the master first asks a sentinel for its address. redis-py's
    # own clients of the sentinels have non-blocking pools: a burst of new master
    # connections asked the first sentinel as many times at once, and left as many idle
    # connections to it (see docs/benchmarks.md, "Redis connections per process"). Its
    # answer is quick: a few connections, waited for, serve every ask. (redis-py's Sentinel
    # asks the clients of its `sentinels` list in order, and moves the one that answers to
    # the front.)
    sentinel.sentinels = [
        redis.Redis(
            connection_pool=redis.BlockingConnectionPool(
                host=host,
                port=port,
                max_connections=SENTINEL_CONNECTIONS,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
        )
        for host, port in seed_nodes(url)
    ]
    return sentinel.master_for(
        parts.path.strip("/") or "mymaster",
        connection_pool_class=SentinelDeadlinePool,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        retry=retry_once(),
        **options,
    )


def connect(url: str, timeout: float) -> redis.Redis | ClusterClient:
    """A client whose calls fail fast when Redis is down, so a request gets a quick 503, and
    wait (within the same `timeout`) for a free connection when all are busy.

    `redis://`, `rediss://` and `unix://` reach one Redis;
    `redis+cluster://host:port[,host:port…]` a Redis Cluster, seeded from any of those
    nodes that answers; `redis+sentinel://host:port[,host:port…]/service` the master a
    Sentinel group names. ValueError for a malformed list of nodes.
    """
    options = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # RESP2, not redis-py 8's default RESP3: under RESP3 every pub/sub message goes
        # through redis-py's push-message handler, which formats the message into a debug log
        # line whether or not it is logged, which made each listener's work per message
        # about half as much again. No command we use answers differently, and a new
        # connection needs no HELLO round trip.
        "protocol": 2,
        # With RESP3, redis-py by default expects maintenance notifications on TCP; while it
        # does, its pool no longer checks a connection for a reply left by an interrupted
        # command, which the next command would read as its own. Off, whatever the protocol.
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
    }
    scheme = urlsplit(url).scheme
    if scheme in CONNECTIONS:
        options["connection_class"] = CONNECTIONS[scheme]
    if scheme.endswith("+cluster"):
        return cluster_client(url, timeout, options)
    if scheme.endswith("+sentinel"):
        return sentinel_client(url, timeout, options)
    # A bounded pool: a burst of a thousand requests (or live streams opening) waits for one
    # of these connections, instead of opening a thousand at once and overflowing Redis's
    # accept backlog.
    pool = DeadlinePool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        retry=retry_once(),
        health_check_interval=30,
        **options,
    )
    return redis.Redis(connection_pool=pool)
