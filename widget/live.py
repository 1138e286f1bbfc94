"""Live counts over Server-Sent Events.

Each worker process holds ONE Redis pub/sub connection (a pattern subscription to every
article channel) and fans each message out to the streams open in that process, so a
thousand viewers cost a thousand idle sockets, not a thousand Redis connections. The same
subscription hears a site's record change (`site_channel`): the process drops its cached
record and sends each open stream of that site its counts with the new reaction set. On a
Redis Cluster the subscription may be on any node (`store.subscription`); when it is lost,
the process's streams end and new ones are refused until it is made again. Each article's
open streams are an audience (`fanout`), sent its newest counts at most once per interval.
Under gunicorn's
gevent worker the listener and the streams are greenlets; under threads they are
threads: the code only uses `threading` and `queue`, which gevent patches.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app, request, stream_with_context

from . import metrics
from .api import encoded_counts, known_site, reaction_set
from .errors import error_response
from .fanout import (
    END_OF_STREAM,
    MAX_INTERVAL_SECONDS,
    WAKE_GROUP,
    WAKE_PAUSE_SECONDS,
    Audience,
    Inbox,
    delivery_interval,
    next_due,
)
from .internals import hiredis_reader, read_into_reader
from .logs import event as log_event
from .reactions import InvalidField, normalize_article
from .security import client_address
from .store import (
    Store,
    channel,
    channel_pattern,
    decode_counts,
    parse_channel,
    site_channels_prefix,
    split_scope,
)
from .store.subscription import Subscriber
from .store.subscription import await_confirmation as await_confirmation  # this module's before

bp = Blueprint("live", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15
# Streams end after a while and the browser reconnects: spreads viewers over app servers
# that were added since, and bounds the life of any one response.
STREAM_SECONDS = 15 * 60
RECONNECT_MILLISECONDS = 3000
# Under gunicorn, streams may take at most this share of a process's connections (gevent) or
# threads (gthread): the rest stays free for votes, reads and /healthz.
STREAMS_SHARE = 0.75
STREAM_RETRY_AFTER_SECONDS = 30
LISTEN_BATCH_SECONDS = 0.02
SUBSCRIBE_SECONDS = 5.0
# A subscription that has heard nothing this long is asked a PING (see Hub._hear).
IDLE_PING_SECONDS = 3.0
# Retries while no Redis node takes the subscription: from this, doubling, up to the last;
# a subscription that held this long is made again at once after its loss.
FIRST_RETRY_SECONDS = 0.05
LAST_RETRY_SECONDS = 1.0
STEADY_SECONDS = 1.0
# How long a new stream waits for a subscription being made, before it is refused.
STREAM_WAIT_SECONDS = 1.0
MAX_CACHED_ARTICLES = 50_000


class Stopping(Exception):
    """No stream opened: the process is stopping (see `Hub.end_streams`)."""


class TooManyStreams(Exception):
    """No stream opened: the client (`scope` "client") or the process ("process") has as
    many open as it may."""

    def __init__(self, scope: str):
        super().__init__(scope)
        self.scope = scope


class Hub:
    """The process's pub/sub listener and the audiences of its open streams, by channel.

    Open streams are capped per client address and per process: each holds a connection
    (and under gthread a thread), and a server whose connections are all streams answers
    nothing else, not even /healthz. Beyond a cap the widget polls.
    """

    def __init__(
        self,
        store: Store,
        per_client: int = 50,
        per_process: int = 10_000,
        writes_per_second: int = 5_000,
    ):
        self.store = store
        self.writes_per_second = writes_per_second
        self.streams: dict[str, Audience] = {}
        self.count = 0
        self.per_client = per_client
        self._ending = False  # the process is stopping: no new stream
        self.per_process = per_process
        self._clients: dict[str, int] = {}  # open streams by client address
        self._owners: dict[Inbox, str] = {}
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        # Counts to send by channel; None: read them first (the site's reaction set changed).
        self._pending: dict[str, dict[str, int] | None] = {}
        # When each article's streams were last sent an event (time.monotonic()); older
        # than the longest interval, forgotten.
        self._sent: dict[str, float] = {}
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._pid = 0
        # Counts by channel, kept current by the same pub/sub messages: a counts GET served
        # from here costs no Redis round trip. Used only while the subscription is up.
        self._counts: dict[str, dict[str, int]] = {}
        self._generation = 0

    def fit(self, connections: int, threads: int | None) -> None:
        """Lowers the per-process cap to a share of what the server process can hold open:
        its connections, or with `threads` (a worker with a thread per request) its
        threads."""
        room = connections if threads is None else min(connections, threads)
        self.per_process = min(self.per_process, int(room * STREAMS_SHARE))

    def open(self, site: str, article: str, client: str = "") -> Inbox:
        """A new stream's inbox; raises TooManyStreams over a cap, Stopping once the
        process's streams were ended. Every inbox opened must be closed (`close` may be
        called more than once)."""
        self._ensure_listener()
        with self._lock:
            if self._ending:
                raise Stopping()
            if self.count >= self.per_process:
                raise TooManyStreams("process")
            if self._clients.get(client, 0) >= self.per_client:
                raise TooManyStreams("client")
            name = channel(site, article)
            audience = self.streams.get(name)
            if audience is None:
                audience = self.streams[name] = Audience()
            inbox = Inbox(audience)
            self.count += 1
            metrics.STREAMS.inc()
            self._clients[client] = self._clients.get(client, 0) + 1
            self._owners[inbox] = client
        return inbox

    def close(self, site: str, article: str, inbox: Inbox) -> None:
        name = channel(site, article)
        with self._lock:
            audience = self.streams.get(name)
            if audience and inbox in audience.inboxes:
                audience.inboxes.discard(inbox)
                self.count -= 1
                metrics.STREAMS.dec()
                if not audience.inboxes:
                    del self.streams[name]
                client = self._owners.pop(inbox)
                if self._clients[client] > 1:
                    self._clients[client] -= 1
                else:
                    del self._clients[client]

    def stop(self) -> None:
        """Ends the listener and the fan-out of an app that is done (tests make hundreds):
        until then each holds a Redis connection and receives every vote's message. They end
        at their next wake-up; reads then go to Redis."""
        self._stopped.set()
        self._wake.set()
        self.connected.clear()

    def _ensure_listener(self) -> None:
        # After a fork (gunicorn preloading) the parent's thread does not exist in the child.
        if self._stopped.is_set():
            return
        if self._listener and self._listener.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._listener and self._listener.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._listener = threading.Thread(
                target=self._listen, name="reactions-live", daemon=True
            )
            self._listener.start()
            threading.Thread(target=self._flush, name="reactions-live-fanout", daemon=True).start()

    def _listen(self) -> None:
        subscriber = Subscriber(self.store.client)
        delay = 0.0
        lost_at: float | None = None
        while not self._stopped.is_set():
            pubsub = None
            confirmed: float | None = None
            try:
                pubsub = subscriber.subscribe(channel_pattern(), SUBSCRIBE_SECONDS)
                confirmed = time.monotonic()
                # Site records cached before (or while the subscription was down) may have
                # changed unannounced; from now on every change is heard.
                self.store.forget_sites()
                self.connected.set()
                if lost_at is not None:
                    log_event(
                        "live.back",
                        "live updates: subscribed again",
                        logging.WARNING,
                        seconds=round(confirmed - lost_at, 1),
                    )
                    lost_at = None
                self._hear(pubsub)
            except (redis.RedisError, OSError) as error:
                self._lost()
                if self._stopped.is_set():
                    return
                if lost_at is None:
                    lost_at = time.monotonic()
                    log_event(
                        "live.lost",
                        "live updates: pub/sub lost; retrying",
                        logging.ERROR,
                        error=type(error).__name__,
                    )
                # After a subscription that held, straight to another node; while none takes
                # it (or it keeps dropping at once), a short backoff.
                if confirmed is not None and time.monotonic() - confirmed >= STEADY_SECONDS:
                    delay = 0.0
                else:
                    delay = min(max(delay * 2, FIRST_RETRY_SECONDS), LAST_RETRY_SECONDS)
                time.sleep(delay)
            finally:
                subscriber.close(pubsub)
        self.connected.clear()  # stopped: it may have been set again while stopping

    def _hear(self, pubsub: redis.client.PubSub) -> None:
        """Dispatches messages until the subscription is lost (raises a RedisError) or the
        hub stops. A subscription that hears nothing for a while is asked a PING: a stalled
        Redis (or a node cut off) that does not answer within the Redis timeout counts as
        lost, where the socket alone would never tell."""
        patience = pubsub.connection.socket_timeout or SUBSCRIBE_SECONDS
        heard = time.monotonic()
        pinged: float | None = None
        while not self._stopped.is_set():
            now = time.monotonic()
            if pinged is None and now - heard >= IDLE_PING_SECONDS:
                pubsub.ping()
                pinged = now
            if pinged is not None and now - pinged >= patience:
                raise redis.TimeoutError(f"no answer to a PING within {patience} s")
            wait = heard + IDLE_PING_SECONDS - now if pinged is None else pinged + patience - now
            message = pubsub.get_message(timeout=max(wait, 0.0))
            newest: dict[str, str] = {}
            if message is not None:
                heard, pinged = time.monotonic(), None
                if message["type"] == "pmessage":
                    newest[message["channel"]] = message["data"]
                elif message["type"] == "psubscribe":
                    raise resubscribed()
                drain(pubsub, newest)
            for name, data in newest.items():
                self._dispatch(name, data)
            # Every vote's message reaches every worker, and waking up for each one
            # costs a worker about as much as the message itself: take them in
            # batches. Caches and streams are at most this much later.
            time.sleep(LISTEN_BATCH_SECONDS)

    def _lost(self) -> None:
        """The subscription is gone: messages may be missed from now on. Reads go to Redis,
        and every open stream ends, so that its browser reconnects (to a process that
        listens, or is told to poll) instead of waiting on a stream that hears nothing."""
        was_connected = self.connected.is_set()
        self.connected.clear()
        with self._lock:
            self._counts.clear()
            self._generation += 1
            # After a failed attempt to subscribe, the open streams are those waiting for
            # the next one (the others ended when it was lost): they may go on then.
            ending = list(self.streams.values()) if was_connected else ()
        for audience in ending:
            audience.end()

    def end_streams(self) -> None:
        """Ends every open stream (the server is stopping): each browser reconnects, to a
        process that serves. An open stream would otherwise hold up a graceful stop for its
        whole timeout. New ones are refused from now on: a browser that reconnects on a
        kept-alive connection to this process would otherwise open one it never ends."""
        with self._lock:
            self._ending = True
            ending = list(self.streams.values())
        for audience in ending:
            audience.end()

    def remember(self, site: str, article: str, counts: dict[str, int] | None) -> None:
        """This process changed an article: its cached counts are replaced (None: dropped)."""
        name = channel(site, article)
        with self._lock:
            self._generation += 1
            if counts is None:
                self._counts.pop(name, None)
            elif name in self._counts:
                self._counts[name] = counts

    def counts_many(self, site: str, articles: list[str]) -> list[dict[str, int]]:
        """The counts of these articles, from memory when the subscription keeps it fresh."""
        self._ensure_listener()
        if not self.connected.is_set():
            return self.store.counts_many(site, articles)
        names = [channel(site, article) for article in articles]
        cached = [self._counts.get(name) for name in names]
        missing = [i for i, counts in enumerate(cached) if counts is None]
        if missing:
            generation = self._generation
            loaded = self.store.counts_many(site, [articles[i] for i in missing])
            with self._lock:
                # Keep what was read only if no change arrived meanwhile (it may be older).
                keep = generation == self._generation and self.connected.is_set()
                if keep and len(self._counts) > MAX_CACHED_ARTICLES:
                    self._counts.clear()
                for i, counts in zip(missing, loaded, strict=True):
                    cached[i] = counts
                    if keep:
                        self._counts[names[i]] = counts
        return cached

    def start(self) -> None:
        """Listen from now on, not from the first read: a server process calls it once it
        has loaded the app, so that it hears every site change even if it took only votes."""
        self._ensure_listener()

    def _dispatch(self, name: str, data: str) -> None:
        if name.endswith(":ch:"):  # cheap first: most messages are votes
            site, article = parse_channel(name)
            if not article:
                self._site_changed(site)
                return
        try:
            counts = decode_counts(data)
        except ValueError:
            # Not a vote's message (anyone with access to Redis may publish): the article's
            # reads go to Redis until its next vote, and the listener goes on.
            log.warning("live updates: ignored a malformed message on %s", name)
            with self._lock:
                self._generation += 1
                self._counts.pop(name, None)
            return
        with self._lock:
            self._generation += 1
            if name in self._counts:
                self._counts[name] = counts
            if name in self.streams:
                self._pending[name] = counts  # only the newest counts of an article matter
                self._wake.set()

    def _site_changed(self, site: str) -> None:
        """The site's record changed: read it afresh, and send its open streams (those of its
        named sets too) their article's counts again, with the new reaction set."""
        self.store.forget_sites(site)
        prefix = site_channels_prefix(site)
        with self._lock:
            for name in self.streams:
                if name.startswith(prefix):
                    self._pending.setdefault(name, self._counts.get(name))
                    self._wake.set()

    def _flush(self) -> None:
        """Sends the newest counts of each changed article to its streams, at most one event
        per article per `delivery_interval`: the first change after a quiet spell at once,
        the changes within an interval as one event at its end, with the newest counts. The
        work per vote thus stays flat however many watch and however fast they vote."""
        wait: float | None = None
        forgotten = time.monotonic()
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            if self._stopped.is_set():
                return
            now = time.monotonic()
            interval = delivery_interval(self.count, self.writes_per_second)
            due, wait = [], None
            with self._lock:
                for name in list(self._pending):
                    ready = next_due(self._sent.get(name), now, interval)
                    if ready <= now:
                        due.append((name, self._pending.pop(name)))
                        self._sent[name] = now
                    elif wait is None or ready - now < wait:
                        wait = ready - now
                if now - forgotten > MAX_INTERVAL_SECONDS:
                    since = now - MAX_INTERVAL_SECONDS
                    self._sent = {name: t for name, t in self._sent.items() if t > since}
                    forgotten = now
            woken = 0
            for name, counts in due:
                try:
                    if counts is None:
                        counts = self.store.counts(*parse_channel(name))
                    self._send(name, counts)
                except (redis.RedisError, ValueError) as error:
                    log.warning("live updates: cannot send %s (%s)", name, type(error).__name__)
                # Many small audiences woken in a row hold the event loop as one large one.
                audience = self.streams.get(name)
                woken += len(audience.inboxes) if audience else 0
                if woken >= WAKE_GROUP:
                    time.sleep(WAKE_PAUSE_SECONDS)
                    woken = 0

    def _send(self, name: str, counts: dict[str, int]) -> None:
        audience = self.streams.get(name)
        if audience is None:
            return
        scope, article = parse_channel(name)
        site_name, set_name = split_scope(scope)
        site = self.store.get_site(site_name)
        if site is None:
            return
        try:
            counted, extra = reaction_set(site, set_name)
        except InvalidField:  # the set was removed: its streams hear nothing more
            return
        # The same body as a counts GET of this article, encoded once for both.
        body = encoded_counts(site.name, article, counted.reactions, counts, extra)[0].decode()
        # Encoded once per message, whatever the number of streams.
        event = f"event: counts\ndata: {body}\n\n"
        metrics.LIVE_EVENTS.inc()
        metrics.LIVE_WRITES.inc(len(audience.inboxes))
        audience.send(event)


def drain(pubsub: redis.client.PubSub, newest: dict[str, str]) -> None:
    """Reads every message already received, keeping the newest data of each channel.

    In arrival order, which is Redis's order of the votes: only the last counts of an article
    in a batch need decoding. Every vote's message reaches every worker, and redis-py's
    get_message does a readiness check, builds a dict and looks up handlers for each one;
    this takes the replies straight from its hiredis reader, whose buffer holds a whole batch
    after one read of the socket. Without hiredis, get_message does it.
    """
    connection = pubsub.connection
    reader = hiredis_reader(connection)
    if reader is None:
        # Not get_message(timeout=0): it gives the rest of a reply that has only partly
        # arrived no time at all, and raises TimeoutError. Once a reply has begun, its rest
        # gets the connection's usual patience, as on the hiredis path below.
        patience = connection.socket_timeout
        while connection.can_read(timeout=0):
            message = pubsub.get_message(timeout=patience)
            if message is not None and message["type"] == "pmessage":
                newest[message["channel"]] = message["data"]
            elif message is not None and message["type"] == "psubscribe":
                raise resubscribed()
        return
    while True:
        reply = reader.gets()
        # RESP2 pub/sub replies are lists: ["pmessage", pattern, channel, data]; a health
        # check's "pong" changes nothing here, a subscription's confirmation is a reconnection.
        if type(reply) is list:
            if len(reply) == 4 and reply[0] == "pmessage":
                newest[reply[2]] = reply[3]
            elif len(reply) == 3 and reply[0] == "psubscribe":
                raise resubscribed()
        elif isinstance(reply, Exception):
            raise reply
        elif connection.can_read(timeout=0):
            # No whole reply buffered (redis-py's marker), and the socket is readable: Redis
            # writes each reply at once, so the rest is on its way.
            read_into_reader(connection)
        else:
            return


def resubscribed() -> redis.ConnectionError:
    """What the listener raises on a subscription's confirmation after its first: redis-py
    reconnects a lost pub/sub connection and subscribes again by itself, and the messages
    published meanwhile are lost. The listener then starts over as after any lost connection,
    dropping the counts it holds."""
    return redis.ConnectionError("the pub/sub connection was lost and made again")


def current_hub() -> Hub:
    return current_app.extensions["reactions_live"]


@bp.get("/stream")
def stream():
    site = known_site(request.args.get("site"))
    counted, extra = reaction_set(site, request.args.get("set"))
    article = normalize_article(request.args.get("article"))
    name = counted.name  # the set's scope: its channels are the set's own
    hub = current_hub()
    # Subscribe before reading the counts, so no change between the two is missed.
    try:
        inbox = hub.open(name, article, stream_client(client_address(request)))
    except TooManyStreams as error:
        return too_many_streams(error.scope)
    except Stopping:
        return live_unavailable()
    # Without a subscription the stream would hear nothing: the widget is told to back off
    # and poll. A subscription being made (a new worker's, or after a lost node) is waited for.
    if not hub.connected.wait(timeout=STREAM_WAIT_SECONDS):
        hub.close(name, article, inbox)
        return live_unavailable()
    try:
        (counts,) = hub.counts_many(name, [article])
    except redis.RedisError:
        hub.close(name, article, inbox)
        raise
    first = encoded_counts(site.name, article, counted.reactions, counts, extra)[0].decode()

    def events() -> Iterator[str]:
        try:
            yield f"retry: {RECONNECT_MILLISECONDS}\nevent: counts\ndata: {first}\n\n"
            ends = time.monotonic() + STREAM_SECONDS
            while time.monotonic() < ends:
                try:
                    event = inbox.get(timeout=HEARTBEAT_SECONDS)
                except queue.Empty:
                    yield ": heartbeat\n\n"
                    continue
                if event is END_OF_STREAM:
                    return
                yield event
        finally:
            hub.close(name, article, inbox)

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    # The server closes the response even when it never sent it (the client left first),
    # which the generator's `finally` alone would not see.
    response.call_on_close(lambda: hub.close(name, article, inbox))
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@functools.lru_cache(maxsize=4096)
def stream_client(address: str) -> str:
    """Whose streams an address's are: an IPv6 address's /64, since one host may use any
    address of its /64 (privacy addresses), and would otherwise get a cap per address."""
    if ":" not in address:
        return address
    try:
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    except ValueError:
        return address


def too_many_streams(scope: str) -> Response:
    """429: the widget, whose stream fails, polls the counts instead."""
    if scope == "client":
        detail = "this address has as many live streams open as it may; poll the counts"
    else:
        detail = "this server has as many live streams open as it may; poll the counts"
    response = error_response(429, "too_many_streams", detail)
    response.headers["Retry-After"] = str(STREAM_RETRY_AFTER_SECONDS)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def live_unavailable() -> Response:
    """503 while this process has no pub/sub subscription: the widget, whose stream fails,
    retries later and then polls the counts, which keep working."""
    response = error_response(
        503, "live_unavailable", "live updates are unavailable right now; poll the counts"
    )
    response.headers["Retry-After"] = str(current_app.config["REACTIONS_RETRY_AFTER"])
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
