"""Live updates under load: 1,000 open SSE streams on one machine.

    .venv/bin/python bench/stream.py [--streams 1000] [--votes 60] [--workers 2]
    .venv/bin/python bench/stream.py --cluster [--streams 1000] [--votes 60] [--workers 2]

Starts `reactions serve` (gevent workers, embedded Redis in a temporary directory), opens the
streams on one article with asyncio, then sends votes one at a time and measures, for each,
the time from the POST's acknowledgement to the moment the LAST stream received the new
counts (p50/p99). Then measures vote throughput (32 concurrent clients, distinct readers) with
the streams open and, as the reference from the same run, with none open.

`--cluster`: a Redis Cluster of 3 masters and 3 replicas and two app servers on it (seeded
with every node; `--one-seed`: with one), `--streams` streams on EACH server; the votes go to
the two servers in turn, and each is measured to the last stream of both servers.
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
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36 bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    data: str, port: int, workers: int, redis_url: str = "", log=subprocess.DEVNULL
) -> subprocess.Popen:
    env = {
        **os.environ,
        "REACTIONS_DATA_DIR": data,
        "REDIS_URL": redis_url,
        # Every stream comes from this one address.
        "REACTIONS_STREAMS_PER_CLIENT": "1000000",
        "REACTIONS_RATE_PER_MINUTE": "10000000",
        "REACTIONS_ADDRESS_RATE_PER_MINUTE": "10000000",
        "REACTIONS_SITE_RATE_PER_SECOND": "10000000",
        "REACTIONS_NEW_ARTICLES_PER_HOUR": "10000000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "widget.cli", "serve", "--port", str(port),
         "--workers", str(workers), "--connections", "5000"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
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


async def open_streams(port: int, streams: int, article: str) -> tuple[list[Stream], list]:
    """`streams` streams of the article, each past its first event, and their tasks."""
    clients = [Stream() for _ in range(streams)]
    tasks = [asyncio.create_task(c.run(port, article)) for c in clients]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients)), 60)
    except TimeoutError:
        failed = [t for t in tasks if t.done()]
        print([c.lines for c in clients if not c.ready.is_set()][:1])
        print(f"only {sum(c.ready.is_set() for c in clients)} streams started; "
              f"{len(failed)} ended: {failed[0].exception() if failed else ''}")  # fmt: skip
        raise
    return clients, tasks


async def latencies(ports: list[int], clients: list[Stream], votes: int, article: str) -> list:
    """Seconds from each vote's acknowledgement to its counts at the last stream, sorted;
    the votes go to the servers in turn."""
    measured = []
    for number in range(1, votes + 1):
        port = ports[number % len(ports)]
        acknowledged = await post_vote(port, article, f"latency-{number}-xxxxxxxxxxxx")
        deadline = time.perf_counter() + 10
        while not all(number in c.seen for c in clients):
            if time.perf_counter() > deadline:
                missing = sum(number not in c.seen for c in clients)
                raise RuntimeError(f"{missing} streams missed vote {number}")
            await asyncio.sleep(0.001)
        measured.append(max(c.seen[number] for c in clients) - acknowledged)
        await asyncio.sleep(0.05)
    return sorted(measured)


def percentiles(measured: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max, in milliseconds."""
    p50 = statistics.median(measured) * 1000
    p99 = measured[max(0, int(len(measured) * 0.99) - 1)] * 1000
    return p50, p99, measured[-1] * 1000


async def measure(port: int, streams: int, votes: int) -> None:
    reference = await throughput(port, 5, "ref", "quiet-article")
    clients, tasks = await open_streams(port, streams, "busy-article")
    print(f"{streams} streams open")
    measured = await latencies([port], clients, votes, "busy-article")
    with_streams = await throughput(port, 5, "load", "busy-article")
    for task in tasks:
        task.cancel()

    p50, p99, most = percentiles(measured)
    print(f"POST acknowledged -> event at all {streams} streams: p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, max {most:.1f} ms ({votes} votes)")  # fmt: skip
    print(f"votes/s, 32 clients, no streams open (reference): {reference:,.0f}")
    ratio = with_streams / reference
    print(f"votes/s, 32 clients, {streams} streams on the voted article: {with_streams:,.0f} "
          f"({ratio:.2f} x reference; a vote fans out to every stream)")  # fmt: skip


async def measure_cluster(ports: list[int], streams: int, votes: int) -> None:
    clients, tasks = [], []
    for port in ports:
        opened, running = await open_streams(port, streams, "busy-article")
        clients += opened
        tasks += running
    print(f"{streams} streams open on each of {len(ports)} app servers ({len(clients)} in all)")
    measured = await latencies(ports, clients, votes, "busy-article")
    for task in tasks:
        task.cancel()
    p50, p99, most = percentiles(measured)
    print(f"POST acknowledged (either server) -> event at all {len(clients)} streams: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {most:.1f} ms ({votes} votes)")  # fmt: skip


def run_cluster(options, base: str) -> None:
    sys.path.insert(0, ROOT)
    from tests.cluster import LocalCluster

    cluster = LocalCluster(Path(base) / "cluster", masters=3, replicas=1).start()
    servers = []
    logs = [Path(base) / f"app{number}.log" for number in (1, 2)]
    try:
        url = cluster.url if options.one_seed else cluster.seeds_url
        ports = [free_port(), free_port()]
        for port, log in zip(ports, logs, strict=True):
            with log.open("w") as output:
                servers.append(
                    start_server(str(log.parent / log.stem), port, options.workers, url, output)
                )
        print(f"Redis Cluster of 3 masters + 3 replicas; 2 app servers of {options.workers} "
              f"workers")  # fmt: skip
        asyncio.run(measure_cluster(ports, options.streams, options.votes))
    except Exception:
        for log in logs:
            if log.exists():
                print(f"--- the end of {log.name}:\n" + "".join(log.open().readlines()[-12:]))
        raise
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--votes", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cluster", action="store_true", help="two app servers on a cluster")
    parser.add_argument("--one-seed", action="store_true", help="seed them with one node")
    options = parser.parse_args()
    if options.cluster:
        with tempfile.TemporaryDirectory() as base:
            run_cluster(options, base)
        return
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
