"""The Redis client: `connect(url)` and the redis-py connection and pool subclasses it uses,
so that a call fails fast, within one deadline, with a redis-py error."""

from __future__ import annotations

import functools
import select
import socket
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from urllib.parse import urlsplit

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

# Redis connections per process (per node on a cluster).
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
        sock, poll = self._sock, _kernel_poll()
        # Only hiredis's reader tells cheaply whether it holds bytes of its own.
        reader = getattr(self._parser, "_reader", None)
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
            if self._sock is sock:
                sock.settimeout(previous)


class HiredisPacker:
    """Packs a command with hiredis, as redis-py's HiredisRespSerializer does, without its
    Python pass over every argument that turns a bytearray or memoryview into bytes: this app
    sends neither, and for the vote script's many arguments that pass cost about as much as
    hiredis's packing itself. A command name with a space in it ("SCRIPT LOAD") or an
    argument hiredis refuses goes to redis-py's serializer, which splits, converts or reports
    it."""

    def __init__(self) -> None:
        self._redis_py = HiredisRespSerializer()

    def pack(self, *args) -> list[bytes]:
        if type(args[0]) is str and " " not in args[0]:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        return self._redis_py.pack(*args)


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


class BoundedConnection:
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

    def _connect(self):
        left = _time_left()
        if left is None or (self.socket_connect_timeout or float("inf")) <= left:
            return super()._connect()
        configured = self.socket_connect_timeout
        self.socket_connect_timeout = left
        try:
            return super()._connect()
        finally:
            self.socket_connect_timeout = configured

    def send_packed_command(self, command, check_health=True):
        try:
            return super().send_packed_command(command, check_health)
        except redis.RedisError:
            raise
        except Exception as error:
            raise self._client_failure(error) from error

    def read_response(self, *args, **kwargs):
        sock, deadline = self._sock, _call_deadline.get()
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
                if self._sock is sock:
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


class DeadlinePool(redis.BlockingConnectionPool):
    """A bounded pool whose `timeout` is the whole time of one call (a command, a script, a
    pipeline): the wait for a free connection, a reconnect, a health check, the reply and a
    retry all share it. Otherwise, under a stall with every connection busy, a request would
    wait the timeout for a connection, then again for its reply, and again for the retry."""

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


class QuickConnection(BoundedConnection, QuickReadinessCheck):
    """The quick readiness check and the hiredis packer (hiredis is a dependency)."""

    def _construct_command_packer(self, packer):
        return packer or HiredisPacker()


class QuickCheckConnection(QuickConnection, redis.Connection):
    """A TCP connection (`redis://`) with the quick readiness check and packer."""


class QuickCheckUnixConnection(QuickConnection, redis.UnixDomainSocketConnection):
    """A unix-socket connection (`unix://`) with the quick readiness check and packer."""

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
    "redis+sentinel": BoundedSentinelConnection,
}


def retry_once() -> Retry:
    """One retry, after a dropped connection only (the vote script is idempotent, so a retry
    never double-counts): after a timeout Redis is stalled, and a retry would only wait the
    timeout again."""
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def connect(url: str, timeout: float) -> redis.Redis:
    """A client whose calls fail fast when Redis is down, so a request gets a quick 503.

    `redis://`, `rediss://` and `unix://` reach one Redis; `redis+cluster://host:port` a
    Redis Cluster (redis-py's cluster client, seeded from that node);
    `redis+sentinel://host:port[,host:port…]/service` the master a Sentinel group names.
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
    if scheme in ("redis+cluster", "rediss+cluster"):
        return redis.RedisCluster.from_url(
            url.replace("+cluster", "", 1),
            retry=retry_once(),
            max_connections=MAX_CONNECTIONS,
            **options,
        )
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        parts = urlsplit(url)
        hosts = []
        for host in parts.netloc.rsplit("@", 1)[-1].split(","):
            name, _, port = host.rpartition(":")
            hosts.append((name.strip("[]"), int(port or 26379)))
        service = parts.path.strip("/") or "mymaster"
        sentinel = Sentinel(
            hosts,
            socket_timeout=timeout,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
            password=parts.password,
            ssl=scheme.startswith("rediss"),
        )
        return sentinel.master_for(service, retry=retry_once(), **options)
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
