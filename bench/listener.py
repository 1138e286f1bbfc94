"""CPU a worker's live listener spends per vote message, against a plain redis-py subscriber.

    .venv/bin/python bench/listener.py [--messages 10000] [--rate 4000] [--rounds 3]

Every vote publishes one message, and the listener of every worker receives it: it keeps the
cached counts and the streams of its process current. Starts one embedded Redis, then, in
each round and one after the other, two gevent processes like a worker: the product's
listener (`live.Hub`, with the article in its cache) and the reference, a plain redis-py
pattern subscriber on the same connection settings that reads and decodes each message as it
comes. Meanwhile this process publishes the messages on one article at a fixed rate. Each
child prints its CPU time per message; the table shows medians and the ratio within a round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE, ARTICLE = "demo", "bench"
COUNTS = {"happy": 1200, "sad": 85, "excited": 310, "sleepy": 12, "angry": 40, "surprise": 96}


def child(kind: str, url: str, seconds: float) -> None:
    """Runs in a fresh interpreter: receives for `seconds`, prints CPU µs per message."""
    from gevent import monkey

    monkey.patch_all()
    import gevent

    sys.path.insert(0, ROOT)
    from widget import create_app
    from widget.store import channel_pattern, connect, decode_counts

    received = 0
    if kind == "hub":
        hub = create_app({"REDIS_URL": url}).extensions["reactions_live"]
        hub.counts_many(SITE, [ARTICLE])  # starts the listener; the article is now cached
        while not hub.connected.is_set():
            gevent.sleep(0.01)
    else:
        pubsub = connect(url, 0.5).pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(channel_pattern())

        def read() -> None:
            nonlocal received
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "pmessage":
                    decode_counts(message["data"])
                    received += 1

        gevent.spawn(read)
        gevent.sleep(0.2)
    print("ready", flush=True)
    started = time.process_time()
    gevent.sleep(seconds)
    print(time.process_time() - started, received, flush=True)


def measure(kind: str, url: str, options) -> float:
    seconds = options.messages / options.rate + 1.0
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, "--url", url, "--seconds", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    publish(url, options.messages, options.rate)
    cpu, received = process.stdout.readline().split()
    process.wait()
    if kind == "plain" and int(received) != options.messages:
        raise RuntimeError(f"the reference received {received} of {options.messages} messages")
    return float(cpu) / options.messages * 1e6


def publish(url: str, messages: int, rate: float) -> None:
    from widget.store import channel, connect

    client = connect(url, 5.0)
    # As the vote script publishes counts: HGETALL's reply joined by commas.
    name = channel(SITE, ARTICLE)
    data = ",".join(f"{reaction},{count}" for reaction, count in COUNTS.items())
    started = time.perf_counter()
    for number in range(messages):
        client.publish(name, data)
        pause = started + (number + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=4000, help="messages per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["hub", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child, options.url, options.seconds)
        return

    sys.path.insert(0, ROOT)
    from widget.embedded_redis import EmbeddedRedis

    rounds = []
    with tempfile.TemporaryDirectory() as data, EmbeddedRedis(data, persistent=False) as redis:
        for number in range(options.rounds):
            # Alternate which one goes first, so a drift of the machine's speed hits both.
            order = ["hub", "plain"] if number % 2 == 0 else ["plain", "hub"]
            rounds.append({kind: measure(kind, redis.url, options) for kind in order})
            print(f"round {number + 1} of {options.rounds} done", file=sys.stderr)
    print(
        f"{options.messages:,} messages at {options.rate:,.0f}/s on one article, "
        f"{options.rounds} rounds; CPU µs per message, medians over the rounds\n"
    )
    for kind, label in (("plain", "plain redis-py subscriber"), ("hub", "live.Hub listener")):
        values = [r[kind] for r in rounds]
        print(f"{label:28} {statistics.median(values):6.1f}   rounds: {values_text(values)}")
    ratios = [r["hub"] / r["plain"] for r in rounds]
    print(f"{'Hub ÷ plain':28} {statistics.median(ratios):6.2f}   rounds: {values_text(ratios)}")


def values_text(values: list[float]) -> str:
    return " / ".join(f"{value:.2f}" if value < 10 else f"{value:.1f}" for value in values)


if __name__ == "__main__":
    main()
