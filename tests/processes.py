"""`reactions serve` with several worker processes, for what every process must see at once
(a changed reaction set, an import, a reset), and the helpers of the scale-out and failover
tests: app servers on a Redis Cluster or Sentinel, a steady vote load, open streams."""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import itertools
import json
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tests.cluster import LocalCluster
from tests.servers import BROWSER_UA, NO_LIMITS, SECRET, Server, request_json


class ServerProcesses(Server):
    """`reactions serve --workers N` on the tests' Redis, without limits on votes."""

    def __init__(self, data_dir, redis_url: str, workers: int = 2, **env):
        limits = {name: str(value) for name, value in NO_LIMITS.items()}
        super().__init__(
            data_dir, workers, REDIS_URL=redis_url, REACTIONS_SECRET_KEY=SECRET, **limits, **env
        )

    def read(self, site: str, article: str) -> dict:
        """A counts GET on a new connection, as a reader's browser opening the page."""
        query = urllib.parse.urlencode({"site": site, "article": article})
        with urllib.request.urlopen(f"{self.url}/api/v1/reactions?{query}", timeout=5) as answer:
            return json.loads(answer.read())

    @contextlib.contextmanager
    def stream(self, site: str, article: str) -> Iterator[Iterator[dict]]:
        """An open live stream of the article: yields its `counts` events as they come."""
        query = urllib.parse.urlencode({"site": site, "article": article})
        with urllib.request.urlopen(f"{self.url}/api/v1/stream?{query}", timeout=10) as answer:

            def events() -> Iterator[dict]:
                data = None
                for raw in answer:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("data: "):
                        data = line[len("data: ") :]
                    elif not line and data is not None:
                        yield json.loads(data)
                        data = None

            yield events()


def pattern_subscription_masters(cluster: LocalCluster) -> list[int]:
    """The masters that hold a pattern subscription (an app worker's live listener)."""
    return [port for port in cluster.master_ports() if cluster.node(port).pubsub_numpat()]


@dataclass(frozen=True)
class Vote:
    """One vote as its reader saw it: `status` 0 is no HTTP answer (refused, reset, timeout)."""

    site: str
    article: str
    sent: float  # time.monotonic()
    answered: float
    status: int

    @property
    def acknowledged(self) -> bool:
        return self.status == 200


def send_vote(url: str, site: str, article: str, reader: str, reaction: str = "happy") -> Vote:
    """A reader's vote through the app server at `url`, from the server's own page."""
    sent = time.monotonic()
    try:
        status = request_json(
            f"{url}/api/v1/reactions",
            {"site": site, "article": article, "reader": reader, "reaction": reaction},
            origin=url,
            timeout=5,
        )[0]
    except OSError:
        status = 0
    return Vote(site, article, sent, time.monotonic(), status)


class VoteLoad:
    """A steady load of readers voting: `clients` threads take turns over the app servers and
    the (site, article) targets, each vote from a reader who never voted before, so each
    acknowledged vote adds exactly one to its article. Each client sends at most one vote
    every `pace` seconds, so the load stays modest on a shared machine."""

    def __init__(
        self,
        urls: list[str],
        targets: list[tuple[str, str]],
        clients: int = 6,
        pace: float = 0.05,
    ):
        self.urls, self.targets, self.clients, self.pace = urls, targets, clients, pace
        self.votes: list[Vote] = []
        self._readers = itertools.count()
        self._prefix = f"load-{time.monotonic_ns()}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> VoteLoad:
        for number in range(self.clients):
            thread = threading.Thread(target=self._client, args=(number,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self, number: int) -> None:
        turns = itertools.cycle(itertools.product(self.urls, self.targets))
        for _ in range(number):  # the clients start at different places of the round
            next(turns)
        while not self._stop.is_set():
            url, (site, article) = next(turns)
            reader = f"{self._prefix}-{next(self._readers)}-reader"
            done = send_vote(url, site, article, reader)
            self.votes.append(done)  # list.append is atomic
            self._stop.wait(max(0.0, self.pace - (done.answered - done.sent)))

    def acknowledged(self) -> Counter:
        """Acknowledged votes by (site, article)."""
        return Counter((v.site, v.article) for v in list(self.votes) if v.acknowledged)

    def sent(self) -> Counter:
        return Counter((v.site, v.article) for v in list(self.votes))

    def of(self, sites: Iterable[str]) -> list[Vote]:
        wanted = set(sites)
        return [v for v in list(self.votes) if v.site in wanted]


def error_seconds(votes: Iterable[Vote]) -> float:
    """How long readers saw failures: the union of the time spans of the failed votes."""
    spans = sorted((v.sent, v.answered) for v in votes if not v.acknowledged)
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def recovered_at(votes: Iterable[Vote], since: float) -> float | None:
    """When votes sent after `since` last began to succeed: the sending time of the first
    vote after the last failure (None: the last vote failed, or none was sent)."""
    after = sorted((v for v in votes if v.sent >= since), key=lambda v: v.sent)
    failures = [v for v in after if not v.acknowledged]
    later = [v for v in after if not failures or v.sent > failures[-1].sent]
    return later[0].sent if later else None


class StreamWatch:
    """A reader's open live stream of an article, on a thread: records when each counts event
    came and its total. A stream that ends or fails is opened again at once, as the widget
    does, and the first event of the new stream (the counts then) counts as delivered."""

    def __init__(self, url: str, site: str, article: str):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.path = "/api/v1/stream?" + urllib.parse.urlencode({"site": site, "article": article})
        self.events: list[tuple[float, int]] = []  # (time.monotonic(), total)
        self.opened = 0
        self._stop = threading.Event()
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> StreamWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=30)

    def _watch(self) -> None:
        while not self._stop.is_set():
            # Longer than the heartbeat: a silent stream is not given up by the reader.
            connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self._connection = connection
            try:
                connection.request(
                    "GET",
                    self.path,
                    headers={"Accept": "text/event-stream", "User-Agent": BROWSER_UA},
                )
                response = connection.getresponse()
                if response.status == 200:
                    self.opened += 1
                    for raw in response:
                        if raw.startswith(b"data: "):
                            total = json.loads(raw[6:]).get("total")
                            if total is not None:
                                self.events.append((time.monotonic(), total))
            except (OSError, http.client.HTTPException, ValueError):
                pass
            finally:
                connection.close()
            self._stop.wait(0.1)  # not a busy loop while the server refuses

    def newest(self) -> int | None:
        return self.events[-1][1] if self.events else None

    def delivered_after(self, since: float) -> float | None:
        """When the stream first brought a total higher than any it brought before `since`
        (None: not yet)."""
        before = [total for at, total in list(self.events) if at <= since]
        highest = max(before, default=-1)
        for at, total in list(self.events):
            if at > since and total > highest:
                return at
        return None


class AdminSession:
    """An admin logged in through the login form of an app server."""

    def __init__(self, url: str, password: str):
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.opener.addheaders = [("User-Agent", BROWSER_UA)]
        page = self.get("/admin/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        form = {"password": password, "csrf_token": csrf.group(1) if csrf else ""}
        with self.opener.open(
            f"{url}/admin/login", data=urllib.parse.urlencode(form).encode(), timeout=10
        ) as answer:
            assert answer.url.rstrip("/").endswith("/admin"), answer.url

    def get(self, path: str) -> str:
        with self.opener.open(f"{self.url}{path}", timeout=10) as answer:
            return answer.read().decode()
