"""Live updates under load: 1,000 open SSE streams on one machine.

    .venv/bin/python bench/stream.py [--streams 1000] [--votes 60] [--workers 2]

Starts `reactions serve` (gevent workers, embedded Redis in a temporary directory), opens the
streams on one article with asyncio, then sends votes one at a time and measures, for each,
the time from the POST's acknowledgement to the moment the LAST stream received the new
counts (p50/p99). Then measures vote throughput (32 concurrent clients, distinct readers) with
the streams open and, as the reference from the same run, with none open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36 bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data: str, port: int, workers: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "REACTIONS_DATA_DIR": data,
        "REDIS_URL": "",
        "REACTIONS_RATE_PER_MINUTE": "10000000",
        "REACTIONS_ADDRESS_RATE_PER_MINUTE": "10000000",
        "REACTIONS_SITE_RATE_PER_SECOND": "10000000",
        "REACTIONS_NEW_ARTICLES_PER_HOUR": "10000000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "widget.cli", "serve", "--port", str(port),
         "--workers", str(workers), "--connections", "5000"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


class Stream:
    """One SSE client: records when it saw each total."""

    def __init__(self):
        self.seen: dict[int, float] = {}
        self.ready = asyncio.Event()

    async def run(self, port: int, article: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /api/v1/stream?site=demo&article={article} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        self.lines = []
        while True:
            line = await reader.readline()
            if len(self.lines) < 12:
                self.lines.append(line)
            if not line:
                return
            if line.startswith(b"data: "):
                total = json.loads(line[6:])["total"]
                self.seen.setdefault(total, time.perf_counter())
                self.ready.set()


async def post_vote(port: int, article: str, reader: str, reaction: str = "happy") -> float:
    body = json.dumps({"site": "demo", "article": article, "reader": reader, "reaction": reaction})
    reader_stream, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /api/v1/reactions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nUser-Agent: {UA}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n{body}".encode()
    )
    await writer.drain()
    status = await reader_stream.readline()
    acknowledged = time.perf_counter()
    assert b" 200 " in status, status
    await reader_stream.read()
    writer.close()
    return acknowledged


async def throughput(port: int, seconds: float, prefix: str, article: str) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def client(number: int) -> None:
        nonlocal done
        count = 0
        while time.perf_counter() < stop:
            await post_vote(port, article, f"{prefix}-{number}-{count}-xxxxxxxxxxxx")
            count += 1
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(32)))
    return done / (time.perf_counter() - started)


async def measure(port: int, streams: int, votes: int) -> None:
    reference = await throughput(port, 5, "ref", "quiet-article")
    clients = [Stream() for _ in range(streams)]
    tasks = [asyncio.create_task(c.run(port, "busy-article")) for c in clients]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 60)
    except TimeoutError:
        failed = [t for t in tasks if t.done()]
        print([c.lines for c in clients if not c.ready.is_set()][:1])
        print(f"only {sum(c.ready.is_set() for c in clients)} streams started; "
              f"{len(failed)} ended: {failed[0].exception() if failed else ''}")  # fmt: skip
        raise
    print(f"{streams} streams open")

    latencies = []
    for number in range(1, votes + 1):
        acknowledged = await post_vote(port, "busy-article", f"latency-{number}-xxxxxxxxxxxx")
        deadline = time.perf_counter() + 10
        while not all(number in c.seen for c in clients):
            if time.perf_counter() > deadline:
                missing = sum(number not in c.seen for c in clients)
                raise RuntimeError(f"{missing} streams missed vote {number}")
            await asyncio.sleep(0.001)
        latencies.append(max(c.seen[number] for c in clients) - acknowledged)
        await asyncio.sleep(0.05)
    with_streams = await throughput(port, 5, "load", "busy-article")
    for task in tasks:
        task.cancel()

    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000
    print(f"POST acknowledged -> event at all {streams} streams: p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, max {latencies[-1] * 1000:.1f} ms ({votes} votes)")  # fmt: skip
    print(f"votes/s, 32 clients, no streams open (reference): {reference:,.0f}")
    ratio = with_streams / reference
    print(f"votes/s, 32 clients, {streams} streams on the voted article: {with_streams:,.0f} "
          f"({ratio:.2f} x reference; a vote fans out to every stream)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--votes", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = start_server(data, port, options.workers)
        try:
            asyncio.run(measure(port, options.streams, options.votes))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    main()
