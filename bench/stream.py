"""Live updates under load: up to 10,000 open SSE streams on one small machine.

    .venv/bin/python bench/stream.py [--streams 10000] [--articles 1] [--workers 2]
    .venv/bin/python bench/stream.py --cluster [--streams 1000] [--workers 2]

Starts `reactions serve` (gevent workers, embedded Redis in a temporary directory) and:
1. measures vote throughput (32 keep-alive clients, distinct readers) with no stream open:
   the reference of this run;
2. opens the streams, spread over `--articles` articles, from `--holders` separate processes
   that hold them on raw non-blocking sockets (epoll) and read without parsing the events:
   each only looks for the last `"total":N` in the bytes it receives, so that the client is
   not the bottleneck (its CPU is printed next to the server's);
3. sends `--votes` lone votes, each after a quiet spell, and measures the time from the POST's
   acknowledgement to the moment the LAST stream of its article has the new total;
4. measures throughput again with the streams open, the votes spread over the watched
   articles, and for every acknowledged vote the same time to its article's last stream.

The bench's clients share the machine's cores with the server.

`--cluster`: a Redis Cluster of 3 masters and 3 replicas and two app servers on it (seeded
with every node; `--one-seed`: with one), `--streams` streams on EACH server; the votes go to
the two servers in turn, and each is measured to the last stream of both servers.
"""

from __future__ import annotations

import argparse
import bisect
import multiprocessing
import os
import resource
import selectors
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
TOTAL = b'"total":'
EVENT = b"event: counts"
VOTERS = 32
# Streams asked for but not yet answered, per holder: more would overflow the listen backlog.
OPENING = 256
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_open_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(
    data: str, port: int, workers: int, connections: int, redis_url: str = "", log=None
) -> subprocess.Popen:
    env = {
        **os.environ,
        "REACTIONS_DATA_DIR": data,
        "REDIS_URL": redis_url,
        # Every stream comes from this one address, and the cap is what is measured here.
        "REACTIONS_STREAMS_PER_CLIENT": "1000000",
        "REACTIONS_STREAMS_PER_PROCESS": "1000000",
        "REACTIONS_RATE_PER_MINUTE": "10000000",
        "REACTIONS_ADDRESS_RATE_PER_MINUTE": "10000000",
        "REACTIONS_SITE_RATE_PER_SECOND": "10000000",
        "REACTIONS_NEW_ARTICLES_PER_HOUR": "10000000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "widget.cli", "serve", "--port", str(port),
         "--workers", str(workers), "--connections", str(connections)],
        cwd=ROOT, env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=raise_open_files,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


# --- /proc: the server's processes, their CPU and memory ------------------------------------


def process_table() -> dict[int, tuple[int, str, float, int]]:
    """pid -> (parent pid, command line, CPU seconds, RSS in KiB) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        table[int(entry)] = (int(fields[1]), command, cpu, int(fields[21]) * PAGE_KB)
    return table


def machine_busy() -> float:
    """CPU seconds every process of the machine has used so far, ours and the others'."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def descendants(root: int, table: dict) -> list[int]:
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        children = [pid for pid, row in table.items() if row[0] == parent]
        found += children
        todo += children
    return found


class ServerFigures:
    """CPU seconds of a server's whole process tree (Redis included) and its workers' RSS."""

    def __init__(self, roots: list[int]):
        self.roots = roots

    def sample(self) -> tuple[float, int, list[int]]:
        table = process_table()
        pids = [p for root in self.roots for p in [root, *descendants(root, table)] if p in table]
        cpu = sum(table[p][2] for p in pids)
        workers = [p for p in pids if "gunicorn" in table.get(table[p][0], (0, ""))[1]]
        return cpu, sum(table[p][3] for p in workers), workers


# --- the stream holders: raw sockets, no parsing ----------------------------------------------


def hold_streams(ports: list[int], articles: list[str], count: int, pipe) -> None:
    """A holder process: opens `count` streams (ports and articles in turn), then records, per
    article, each moment the lowest total seen by all of its streams rose: (time, total).
    Answers the parent's commands on `pipe`: "mark" (start recording afresh), "report",
    "stop"."""
    raise_open_files()
    selector = selectors.EpollSelector()
    selector.register(pipe.fileno(), selectors.EVENT_READ, None)
    seen: dict[int, int] = {}  # socket fd -> highest total seen (-1: nothing yet)
    tails: dict[int, bytes] = {}
    article_of: dict[int, int] = {}
    members: list[list[int]] = [[] for _ in articles]
    lowest = [-1] * len(articles)
    at_lowest = [0] * len(articles)
    rises: list[list[tuple[float, int]]] = [[] for _ in articles]
    sockets: dict[int, socket.socket] = {}
    opened = started = refused = ended = events = 0
    cpu_mark, told = 0.0, False

    def open_one(number: int) -> None:
        port, article = ports[number % len(ports)], number % len(articles)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            f"GET /api/v1/stream?site=demo&article={articles[article]} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nUser-Agent: {UA}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        sock.setblocking(False)
        fd = sock.fileno()
        sockets[fd], seen[fd], tails[fd], article_of[fd] = sock, -1, b"", article
        members[article].append(fd)
        at_lowest[article] += 1
        selector.register(fd, selectors.EVENT_READ, sock)

    def saw(fd: int, total: int) -> None:
        before = seen[fd]
        if total <= before:
            return
        seen[fd] = total
        article = article_of[fd]
        if before == lowest[article]:
            at_lowest[article] -= 1
            if at_lowest[article] == 0:
                values = [seen[member] for member in members[article]]
                lowest[article] = low = min(values)
                at_lowest[article] = values.count(low)
                rises[article].append((time.perf_counter(), low))

    def drop(fd: int) -> None:
        selector.unregister(fd)
        sockets.pop(fd).close()

    while True:
        while opened < count and opened - started - refused < OPENING:
            open_one(opened)
            opened += 1
        for key, _ in selector.select(timeout=1.0):
            if key.data is None:
                command = pipe.recv()
                if command == "mark":
                    for article in rises:
                        article.clear()
                    events, cpu_mark = 0, cpu_seconds()
                elif command == "report":
                    # None: this holder has no stream of that article.
                    ours = [r if m else None for r, m in zip(rises, members, strict=True)]
                    pipe.send((ours, events, cpu_seconds() - cpu_mark, started, refused, ended))
                elif command == "stop":
                    for sock in sockets.values():
                        sock.close()
                    return
                continue
            fd = key.fd
            try:
                data = key.data.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                ended += 1
                drop(fd)
                continue
            if seen[fd] < 0 and data.startswith(b"HTTP/") and not data.startswith(b"HTTP/1.1 200"):
                refused += 1
                drop(fd)
                continue
            events += data.count(EVENT)
            data = tails[fd] + data
            tails[fd] = data[-24:]
            at = data.rfind(TOTAL)
            if at < 0:
                continue
            start = end = at + len(TOTAL)
            while end < len(data) and 48 <= data[end] <= 57:
                end += 1
            if end == len(data):  # the number may go on in the next read: the tail keeps it
                at = data.rfind(TOTAL, 0, at)
                if at < 0:
                    continue
                start = end = at + len(TOTAL)
                while 48 <= data[end] <= 57:
                    end += 1
            if seen[fd] < 0:
                started += 1
            saw(fd, int(data[start:end]))
        if started + refused >= count and opened == count and not told:
            pipe.send("ready")
            told = True


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Holders:
    """The stream-holding processes of a run."""

    def __init__(self, ports: list[int], articles: list[str], streams: int, processes: int):
        context = multiprocessing.get_context("fork")
        self.pipes, self.processes = [], []
        for number in range(processes):
            share = streams // processes + (number < streams % processes)
            ours, theirs = context.Pipe()
            process = context.Process(
                target=hold_streams, args=(ports, articles, share, theirs), daemon=True
            )
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)
        self.articles = articles

    def wait_ready(self, timeout: float = 300) -> None:
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise RuntimeError("the streams did not open in time")
            pipe.recv()

    def mark(self) -> None:
        for pipe in self.pipes:
            pipe.send("mark")

    def report(self) -> tuple[dict, int, float, int, int, int]:
        """(article -> rises merged over holders, events, holders' CPU seconds, streams
        started, refused, ended since they opened)."""
        for pipe in self.pipes:
            pipe.send("report")
        reports = [pipe.recv() for pipe in self.pipes]
        rises = {
            article: [report[0][n] for report in reports] for n, article in enumerate(self.articles)
        }
        return (
            rises,
            sum(r[1] for r in reports),
            sum(r[2] for r in reports),
            *(sum(r[k] for r in reports) for k in (3, 4, 5)),
        )  # fmt: skip

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send("stop")
        for process in self.processes:
            process.join(10)


def delivered(rises: list[list[tuple[float, int]]], total: int) -> float | None:
    """When every stream of an article (all holders) had at least `total`."""
    moments = []
    for holder in rises:
        if holder is None:
            continue
        at = bisect.bisect_left(holder, total, key=lambda rise: rise[1])
        if at == len(holder):
            return None
        moments.append(holder[at][0])
    return max(moments, default=None)


# --- the votes: raw keep-alive connections ----------------------------------------------------


class Voters:
    """`VOTERS` keep-alive connections, each voting as soon as its last vote was answered;
    every answer's (acknowledged at, article, total) is kept."""

    def __init__(self, ports: list[int], clients: int = VOTERS):
        self.ports = ports
        self.clients = clients
        self.acknowledged: list[tuple[float, str, int]] = []
        self.reconnected = 0
        self.failed: dict[str, int] = {}  # status -> votes answered so

    def request(self, port: int, article: str, reader: str) -> bytes:
        body = f'{{"site":"demo","article":"{article}","reader":"{reader}","reaction":"happy"}}'
        return (
            f"POST /api/v1/reactions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nUser-Agent: {UA}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def run(self, seconds: float, articles: list[str], prefix: str) -> float:
        """Votes for `seconds`, the articles in turn; returns votes/s. A keep-alive connection
        the server closes is made again and its vote sent again (the same reader: counted
        once), as a browser does."""
        selector = selectors.DefaultSelector()
        sent = 0
        buffers: dict[socket.socket, bytes] = {}
        pending: dict[socket.socket, tuple[str, bytes]] = {}

        def connect(port: int) -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffers[sock] = b""
            selector.register(sock, selectors.EVENT_READ, port)
            return sock

        def send(sock: socket.socket, vote: tuple[str, bytes] | None = None) -> None:
            nonlocal sent
            if vote is None:
                article = articles[sent % len(articles)]
                port = selector.get_key(sock).data
                vote = article, self.request(port, article, f"{prefix}-{sent:08d}-xxxxxxxxxxxx")
                sent += 1
            sock.sendall(vote[1])
            pending[sock] = vote

        socks = [connect(self.ports[n % len(self.ports)]) for n in range(self.clients)]
        started = time.perf_counter()
        stop = started + seconds
        done = 0
        for sock in socks:
            send(sock)
        while pending:
            for key, _ in selector.select(timeout=5):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    del buffers[sock]
                    sock.close()
                    if sock in pending:  # else idle since its last vote, after the run
                        self.reconnected += 1
                        send(connect(key.data), pending.pop(sock))
                    continue
                buffer = buffers[sock] + data
                head_end = buffer.find(b"\r\n\r\n")
                if head_end < 0:
                    buffers[sock] = buffer
                    continue
                head = buffer[:head_end].lower()
                length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                if len(buffer) < head_end + 4 + length:
                    buffers[sock] = buffer
                    continue
                now = time.perf_counter()
                body = buffer[head_end + 4 : head_end + 4 + length]
                buffers[sock] = buffer[head_end + 4 + length :]
                if buffer.startswith(b"HTTP/1.1 200"):
                    at = body.index(TOTAL) + len(TOTAL)
                    total = int(body[at : body.index(b",", at)])
                    self.acknowledged.append((now, pending.pop(sock)[0], total))
                    done += 1
                else:
                    status = buffer[9:12].decode()
                    self.failed[status] = self.failed.get(status, 0) + 1
                    pending.pop(sock)
                if now < stop:
                    send(sock)
        elapsed = time.perf_counter() - started
        for sock in buffers:
            selector.unregister(sock)
            sock.close()
        return done / elapsed


# --- the run -----------------------------------------------------------------------------------


def percentiles(measured: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max, in milliseconds."""
    measured = sorted(measured)
    p50 = statistics.median(measured) * 1000
    p99 = measured[max(0, int(len(measured) * 0.99) - 1)] * 1000
    return p50, p99, measured[-1] * 1000


def latencies(acknowledged: list, rises: dict) -> tuple[list[float], int]:
    """Seconds from each acknowledged vote to its total at its article's last stream, and
    how many votes never reached every stream."""
    measured, missed = [], 0
    for at, article, total in acknowledged:
        reached = delivered(rises[article], total)
        if reached is None:
            missed += 1
        else:
            measured.append(max(0.0, reached - at))
    return measured, missed


def lone_votes(ports: list[int], articles: list[str], votes: int, quiet: float) -> list:
    """`votes` votes one at a time, each after `quiet` seconds without one on its article."""
    voters = Voters(ports, clients=1)
    for number in range(votes):
        voters.run(0, [articles[number % len(articles)]], f"lone-{number}")
        time.sleep(quiet / min(len(articles), votes))
    return voters.acknowledged


def measure(ports: list[int], options, figures: ServerFigures) -> None:
    streams, workers = options.streams * len(ports), options.workers * len(ports)
    watched = [f"watched-{n:03d}" for n in range(options.articles)]
    quiet = [f"quiet-{n:03d}" for n in range(options.articles)]
    print(f"{streams:,} streams on {options.articles} article(s), {len(ports)} server(s) of "
          f"{options.workers} gevent workers, {os.cpu_count()} cores shared with the "
          "clients", flush=True)  # fmt: skip

    cpu, rss_before, _ = figures.sample()
    mine, busy = cpu_seconds(), machine_busy()
    reference_voters = Voters(ports)
    reference = reference_voters.run(options.seconds, quiet, "reference")
    server_reference = figures.sample()[0] - cpu
    voter_reference = cpu_seconds() - mine
    others_reference = machine_busy() - busy - server_reference - voter_reference

    opening = time.perf_counter()
    holders = Holders(ports, watched, streams, options.holders)
    try:
        holders.wait_ready()
        _, _, _, started, refused, _ = holders.report()
        print(f"{started:,} streams open ({refused} refused) in "
              f"{time.perf_counter() - opening:.1f} s", flush=True)  # fmt: skip
        if refused:
            raise RuntimeError("streams were refused")
        _, rss_after, worker_pids = figures.sample()

        holders.mark()
        cpu = figures.sample()[0]
        lone = lone_votes(ports, watched, options.votes, options.quiet)
        time.sleep(options.quiet)
        rises, lone_events, *_ = holders.report()
        # Nothing but the lone votes and their fan-out: the server's CPU per event written.
        per_event = (figures.sample()[0] - cpu) / max(lone_events, 1)
        lone_measured, lone_missed = latencies(lone, rises)

        holders.mark()
        cpu = figures.sample()[0]
        mine, busy = cpu_seconds(), machine_busy()
        loaded = Voters(ports)
        elapsed = time.perf_counter()
        with_streams = loaded.run(options.seconds, watched, "load")
        elapsed = time.perf_counter() - elapsed
        _, events, holder_cpu, _, _, ended = holders.report()
        server_loaded = figures.sample()[0] - cpu
        voter_loaded = cpu_seconds() - mine
        others_loaded = machine_busy() - busy - server_loaded - voter_loaded - holder_cpu
        time.sleep(options.quiet)  # the last votes' events are on their way
        rises, *_ = holders.report()
        measured, missed = latencies(loaded.acknowledged, rises)
    finally:
        holders.stop()

    print(f"server workers' RSS: {rss_before / 1024:,.0f} MiB with no stream, "
          f"{rss_after / 1024:,.0f} MiB with {streams:,}: "
          f"{(rss_after - rss_before) / 1024 / streams * 1000:.1f} MiB per 1,000 streams "
          f"({len(worker_pids)} workers)")  # fmt: skip
    if lone_measured:
        p50, p99, most = percentiles(lone_measured)
        print(f"lone vote acknowledged -> its article's last stream: p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms, max {most:.1f} ms ({len(lone)} votes, "
              f"{lone_missed} missed); server CPU per event written: "
              f"{per_event * 1e6:.0f} µs")  # fmt: skip
    print(f"votes/s, {VOTERS} clients, no stream open (reference): {reference:,.0f}")
    ratio = with_streams / reference
    print(f"votes/s, {VOTERS} clients, {streams:,} streams on the voted articles: "
          f"{with_streams:,.0f} ({ratio:.2f} x reference; {loaded.reconnected} keep-alive "
          f"connections closed by the server; not answered 200: {loaded.failed or 'none'}; "
          f"reference: {reference_voters.failed or 'none'})")  # fmt: skip
    if measured:
        p50, p99, most = percentiles(measured)
        print(f"under that load, vote acknowledged -> its article's last stream: p50 {p50:.1f} "
              f"ms, p99 {p99:.1f} ms, max {most:.1f} ms ({len(loaded.acknowledged):,} votes, "
              f"{missed} missed)")  # fmt: skip
    print(f"fan-out: {events / elapsed:,.0f} events written/s in all, "
          f"{events / elapsed / workers:,.0f} per process; {ended} streams ended")  # fmt: skip
    print(f"CPU, seconds per second of load: server {server_reference / options.seconds:.2f} "
          f"and voting client {voter_reference / options.seconds:.2f} with no stream; "
          f"server {server_loaded / elapsed:.2f}, voting client {voter_loaded / elapsed:.2f}, "
          f"stream holders {holder_cpu / elapsed:.2f} with the streams; other processes of "
          f"the machine {others_reference / options.seconds:.2f} then "
          f"{others_loaded / elapsed:.2f}")  # fmt: skip


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
                data = str(log.parent / log.stem)
                servers.append(
                    start_server(data, port, options.workers, options.connections, url, output)
                )
        print("Redis Cluster of 3 masters + 3 replicas")
        measure(ports, options, ServerFigures([s.pid for s in servers]))
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
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--articles", type=int, default=1, help="spread the streams over")
    parser.add_argument("--votes", type=int, default=20, help="lone votes, one at a time")
    parser.add_argument("--quiet", type=float, default=1.2, help="seconds between lone votes")
    parser.add_argument("--seconds", type=float, default=8, help="of each throughput run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=20_000, help="per worker")
    parser.add_argument("--holders", type=int, default=2, help="processes holding streams")
    parser.add_argument("--cluster", action="store_true", help="two app servers on a cluster")
    parser.add_argument("--one-seed", action="store_true", help="seed them with one node")
    options = parser.parse_args()
    raise_open_files()
    if options.cluster:
        with tempfile.TemporaryDirectory() as base:
            run_cluster(options, base)
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = start_server(data, port, options.workers, options.connections)
        try:
            measure([port], options, ServerFigures([server.pid]))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    main()
