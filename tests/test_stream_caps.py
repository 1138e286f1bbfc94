"""Live streams are capped per client address and per process, so that however many a
client opens, `reactions serve` keeps answering /healthz, votes and reads. Beyond a cap a
stream is answered 429 and the widget polls.

Streams are opened from raw sockets, each from a loopback address of its own choosing
(127.0.0.0/8 is all loopback on Linux), as clients at several addresses would."""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.request

import pytest

from tests.processes import ServerProcesses
from tests.servers import BROWSER_UA, SECRET, wait_until
from widget import create_app


class Stream:
    """A stream asked for over one socket: its status, and for a 200 the open socket."""

    def __init__(self, port: int, source: str, article: str = "a"):
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=(source, 0)
        )
        self.sock.sendall(
            f"GET /api/v1/stream?site=demo&article={article} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUser-Agent: {BROWSER_UA}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])
        self.body = None
        if self.status != 200:
            length = int(next(line for line in head.split(b"\r\n") if b"Length" in line)[16:])
            while len(self.buffer) < length:
                self.receive()
            self.body = json.loads(self.buffer[:length])
            self.close()  # as a browser drops a failed stream

    def receive(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        self.buffer += data

    def wait_for(self, text: bytes) -> None:
        while text not in self.buffer:
            self.receive()

    def close(self) -> None:
        self.sock.close()


def healthz(server) -> int:
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as answer:
        return answer.status


@pytest.fixture
def serve(tmp_path, redis_server, redis_client):
    servers = []

    def start(*options, **env):
        server = ServerProcesses(tmp_path, redis_server.url, 1, options=options, **env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def streams():
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def open_streams(server, streams, sources, each: int) -> list[int]:
    statuses = []
    for source in sources:
        for _ in range(each):
            stream = Stream(server.port, source)
            statuses.append(stream.status)
            if stream.status == 200:
                streams.append(stream)
    return statuses


def test_one_address_gets_a_few_streams_and_polls_beyond(serve, streams):
    server = serve(REACTIONS_STREAMS_PER_CLIENT="3")

    statuses = open_streams(server, streams, ["127.0.0.2"], each=6)
    refused = Stream(server.port, "127.0.0.2")
    elsewhere = Stream(server.port, "127.0.0.3")
    streams.append(elsewhere)

    assert statuses == [200, 200, 200, 429, 429, 429]
    assert refused.status == 429 and refused.body["error"] == "too_many_streams"
    assert "address" in refused.body["detail"]
    assert elsewhere.status == 200


def test_a_closed_stream_makes_room_for_another(serve, streams):
    server = serve(REACTIONS_STREAMS_PER_CLIENT="2")
    open_streams(server, streams, ["127.0.0.2"], each=2)

    streams.pop().close()

    # The server sees a stream gone when it next writes to it: a vote's counts.
    votes = iter(range(1000))

    def room_again() -> bool:
        server.vote(f"reader-{next(votes):04d}-aaaaaaaaaaaa", "happy", "a")
        streams.append(Stream(server.port, "127.0.0.2"))
        return streams[-1].status == 200

    wait_until(room_again)


@pytest.mark.parametrize(
    ("options", "env", "cap"),
    [
        # a setting
        ((), {"REACTIONS_STREAMS_PER_PROCESS": "12"}, 12),
        # three quarters of the connections of a gevent process
        (("--connections", "16"), {}, 12),
        # three quarters of the threads of a gthread process
        (("--worker-class", "gthread", "--threads", "4"), {}, 3),
    ],
    ids=["setting", "gevent-connections", "gthread-threads"],
)
def test_a_full_process_still_answers_health_votes_and_reads(serve, streams, options, env, cap):
    server = serve(*options, REACTIONS_STREAMS_PER_CLIENT="3", **env)
    addresses = [f"127.0.0.{n}" for n in range(2, 8)]  # 18 streams asked for

    statuses = open_streams(server, streams, addresses, each=3)
    refused = Stream(server.port, "127.0.0.9")

    assert statuses.count(200) == cap and statuses.count(429) == 18 - cap
    assert refused.status == 429 and "server" in refused.body["detail"]
    assert healthz(server) == 200
    assert server.vote("reader-token-aaaaaaaaaaaa", "happy", "a")["counted"] is True
    assert server.counts("a")["happy"] == 1
    with contextlib.closing(streams[0]):
        streams[0].wait_for(b'"total":1')


@pytest.mark.parametrize(
    ("first", "second", "refused"),
    [
        ("2001:db8::1", "2001:db8::2", True),  # one host's /64: privacy addresses
        ("2001:db8::1", "2001:db8:0:1::1", False),
        ("::ffff:192.0.2.1", "192.0.2.1", True),  # one address, spelled twice
        ("192.0.2.1", "192.0.2.2", False),
    ],
)
def test_the_cap_is_per_client_not_per_spelling_of_its_address(
    redis_url, redis_client, first, second, refused
):
    app = create_app(
        {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET, "REACTIONS_STREAMS_PER_CLIENT": 1}
    )
    client = app.test_client()

    def stream(address):
        return client.get(
            "/api/v1/stream?site=demo&article=a", environ_base={"REMOTE_ADDR": address}
        )

    with contextlib.closing(stream(first)) as opened, contextlib.closing(stream(second)) as then:
        assert opened.status_code == 200
        assert then.status_code == (429 if refused else 200)
    app.extensions["reactions_live"].stop()
