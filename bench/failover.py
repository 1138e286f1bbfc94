"""What one dead Redis master costs readers: votes and live streams, second by second.

    .venv/bin/python bench/failover.py [--kill records|subscription|PORT] [--idle-shard]
    .venv/bin/python bench/failover.py --sentinel [--node-timeout 2000]

Starts a Redis Cluster of 3 masters and 3 replicas (cluster-require-full-coverage no) and two
app servers (`reactions serve`, 2 workers each) seeded with every node, saves one site per
master, and runs a steady vote load over those sites through both servers (distinct readers:
each acknowledged vote adds one) while streams on both servers watch an article of a site on
another shard than the one killed. Then it SIGKILLs a master: the one holding the site
records (`records`), the one holding the workers' pattern subscription (`subscription`), or
the node at PORT; `--idle-shard` leaves the killed shard's sites out of the load. It prints,
per second from the kill, the votes that succeeded and failed for the killed shard's sites
and for the others, and the counts events the streams of each server received; then when
the replica took over, when each server's streams delivered again, and the totals
(acknowledged against counted). `--sentinel`: 1 master, 1 replica and 3 sentinels, one app
server, the master killed. `--one-seed` seeds the servers with one node.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.cluster import LocalCluster, LocalSentinel  # noqa: E402
from tests.processes import (  # noqa: E402
    ServerProcesses,
    StreamWatch,
    VoteLoad,
    error_seconds,
    pattern_subscription_masters,
    recovered_at,
    send_vote,
)
from tests.servers import SECRET  # noqa: E402
from widget import create_app  # noqa: E402
from widget.store import Site  # noqa: E402

STREAMS_PER_SERVER = 4
ARTICLE = "failover-bench"


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def is_master(node) -> bool:
    try:
        return node.info("replication")["role"] == "master"
    except Exception:  # a node that does not answer yet is not the master
        return False


def report(
    load: VoteLoad,
    dead_sites: list[str],
    streams: dict[str, list[StreamWatch]],
    killed: float,
    promoted: float,
    totals: dict[str, int],
) -> None:
    """The per-second table, the recovery times and the totals."""
    names = list(streams)
    header = (
        f"{'second':>6} | {'killed shard ok':>15} {'failed':>6} | {'others ok':>9} {'failed':>6}"
    )
    header += "".join(f" | events {n:>8}" for n in names)
    print(header)
    first = int(min(v.sent for v in load.votes) - killed) - 1
    last = int(max(v.sent for v in load.votes) - killed)
    for second in range(first, last + 1):
        start, end = killed + second, killed + second + 1
        votes = [v for v in load.votes if start <= v.sent < end]
        dead = Counter(v.acknowledged for v in votes if v.site in dead_sites)
        live = Counter(v.acknowledged for v in votes if v.site not in dead_sites)
        line = (
            f"{second:>+6} | {dead[True]:>15} {dead[False]:>6} | {live[True]:>9} {live[False]:>6}"
        )
        for name in names:
            events = sum(1 for s in streams[name] for at, _ in s.events if start <= at < end)
            line += f" | {events:>15}"
        marks = [m for m, at in (("kill", killed), ("promoted", promoted)) if start <= at < end]
        print(line + ("  <- " + ", ".join(marks) if marks else ""))

    print(f"\nreplica promoted {promoted - killed:.1f} s after the kill")
    groups = {
        "killed shard": [v for v in load.votes if v.site in dead_sites],
        "other shards": [v for v in load.votes if v.site not in dead_sites],
    }
    for group, votes in groups.items():
        if not votes:
            continue
        failed = Counter(v.status or "no answer" for v in votes if not v.acknowledged)
        back = recovered_at(votes, killed)
        if not failed:
            when = "the kill on (none failed)"
        elif back is None:
            when = "no time while measured"
        else:
            when = f"{back - killed:.1f} s after the kill"
        statuses = ", ".join(f"{status}: {count}" for status, count in failed.most_common())
        print(
            f"{group}: {sum(failed.values())} failed votes ({statuses or 'none'}; "
            f"{error_seconds(votes):.1f} s of errors); all succeed from {when}"
        )
    for name in names:
        delivered = [s.delivered_after(promoted) for s in streams[name]]
        seen = [at - promoted for at in delivered if at is not None]
        missing = len(delivered) - len(seen)
        if missing:
            text = f"{missing} of {len(delivered)} never delivered a new vote while measured"
        else:
            text = f"all delivered a new vote by {max(seen):.1f} s after the promotion"
        if seen:
            text += f" (the first {min(seen):.1f} s after it)"
        print(f"streams on {name}: {text}")

    acknowledged, sent = load.acknowledged(), load.sent()
    print(f"\n{'site':>10} {'sent':>7} {'acknowledged':>12} {'counted':>8} {'lost':>5}")
    for site in sorted(totals):
        target = (site, ARTICLE)
        lost = max(0, acknowledged[target] - totals[site])
        print(
            f"{site:>10} {sent[target]:>7} {acknowledged[target]:>12} {totals[site]:>8} {lost:>5}"
        )
    all_acknowledged = sum(acknowledged.values())
    print(f"{'all':>10} {sum(sent.values()):>7} {all_acknowledged:>12} {sum(totals.values()):>8}")


def run(servers, sites: list[str], choose, options) -> tuple:
    """A vote on every site through every server (the workers listen by then); `choose()`
    names the victim: (kill, the replica's node, the killed shard's sites). Then votes on
    every site (`--idle-shard`: but the killed shard's), streams on each server watching a
    site of another shard (the only one, with Sentinel), two seconds of steady state,
    `kill()`, and `--after` seconds more. (load, dead sites, streams, killed, promoted)."""
    for number, server in enumerate(servers):
        for name in sites:
            reader = f"warm-up-{number}-{name}-{time.monotonic_ns()}"
            wait_for(
                lambda u=server.url, n=name, r=reader: send_vote(u, n, "warm-up", r).acknowledged,
                30,
                f"a vote on {name}",
            )
    kill, replica, dead_sites = choose()
    voted = [n for n in sites if not (options.idle_shard and n in dead_sites)]
    load = VoteLoad([s.url for s in servers], [(n, ARTICLE) for n in voted], options.clients)
    watched = next((n for n in sites if n not in dead_sites), sites[0])
    with contextlib.ExitStack() as running:
        running.enter_context(load)
        streams = {
            f"server {number}": [
                running.enter_context(StreamWatch(server.url, watched, ARTICLE))
                for _ in range(STREAMS_PER_SERVER)
            ]
            for number, server in enumerate(servers, 1)
        }
        wait_for(lambda: all(s.events for g in streams.values() for s in g), 30, "streams")
        time.sleep(2)  # a steady state to compare with
        killed = time.monotonic()
        kill()
        wait_for(lambda: is_master(replica), 60, "the replica's promotion")
        promoted = time.monotonic()
        time.sleep(max(0.0, killed + options.after - time.monotonic()))
    return load, dead_sites, streams, killed, promoted


def cluster_failover(options, base: Path) -> None:
    cluster = LocalCluster(base / "cluster", 3, 1, options.node_timeout).start()
    servers: list[ServerProcesses] = []
    app = create_app({"REDIS_URL": cluster.url, "REACTIONS_SECRET_KEY": SECRET})
    store = app.extensions["reactions"]
    try:
        url = cluster.url if options.one_seed else cluster.seeds_url
        servers = [ServerProcesses(base / f"app{n}", url, workers=2) for n in (1, 2)]
        sites = sorted(cluster.site_per_master().values())
        for name in sites:
            store.save_site(Site(name, tuple(server.url for server in servers)))
        for server in servers:
            server.start()
        seeds = "one seed" if options.one_seed else "every node as a seed"
        print(f"cluster of 3 masters + 3 replicas, node timeout {options.node_timeout} ms; "
              f"two app servers of 2 workers, {seeds}")  # fmt: skip
        print(f"sites: {', '.join(f'{n} on {cluster.master_of(n)}' for n in sites)}")
        dead = 0

        def choose():
            nonlocal dead
            records = cluster.master_of("rx:sites")
            holders = pattern_subscription_masters(cluster)
            print(f"site records on {records}; pattern subscriptions on {holders or 'no master'}")
            if options.kill == "records":
                dead = records
            elif options.kill == "subscription":
                dead = holders[0] if holders else records
            else:
                dead = int(options.kill)
            (replica,) = next(r for _, _, m, r in cluster.slots() if m == dead)
            print(f"killing master {dead} ({options.kill}); its replica is {replica}\n")
            dead_sites = [n for n in sites if cluster.master_of(n) == dead]
            return (lambda: cluster.kill(dead)), cluster.node(replica), dead_sites

        results = run(servers, sites, choose, options)
        cluster.restart(dead)
        report(*results, {n: sum(store.counts(n, ARTICLE).values()) for n in sites})
    finally:
        app.extensions["reactions_live"].stop()
        for server in servers:
            if hasattr(server, "process"):
                server.stop()
        cluster.stop()


def sentinel_failover(options, base: Path) -> None:
    sentinel = LocalSentinel(base / "sentinel", down_after=options.node_timeout).start()
    app = create_app({"REDIS_URL": sentinel.url, "REACTIONS_SECRET_KEY": SECRET})
    store = app.extensions["reactions"]
    server = ServerProcesses(base / "app", sentinel.url, workers=2)
    try:
        server.start()
        dead = sentinel.master()
        (replica,) = (port for port in sentinel.redis_ports if port != dead)
        print(f"Sentinel: master {dead}, replica {replica}, 3 sentinels (quorum 2), "
              f"down-after {options.node_timeout} ms; one app server of 2 workers")  # fmt: skip
        print("killing the master\n")

        def choose():
            return (lambda: sentinel.kill(dead)), sentinel.node(replica), ["demo"]

        results = run([server], ["demo"], choose, options)
        # Back as a replica of the master every sentinel names.
        wait_for(
            lambda: all(
                int(sentinel.node(p).sentinel_get_master_addr_by_name(sentinel.name)[1]) == replica
                for p in sentinel.sentinel_ports
            ),
            30,
            "every sentinel naming the new master",
        )
        sentinel.restart(dead)
        report(*results, {"demo": sum(store.counts("demo", ARTICLE).values())})
    finally:
        app.extensions["reactions_live"].stop()
        if hasattr(server, "process"):
            server.stop()
        sentinel.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill", default="records", help="records, subscription or a port")
    parser.add_argument("--sentinel", action="store_true")
    parser.add_argument("--node-timeout", type=int, default=2000, help="milliseconds")
    parser.add_argument("--after", type=float, default=12.0, help="seconds measured after the kill")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--one-seed", action="store_true", help="seed the servers with one node")
    parser.add_argument(
        "--idle-shard", action="store_true", help="no votes on the killed shard's sites"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as base:
        if options.sentinel:
            sentinel_failover(options, Path(base))
        else:
            cluster_failover(options, Path(base))


if __name__ == "__main__":
    main()
