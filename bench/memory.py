"""Redis memory per article and per reader choice.

    .venv/bin/python bench/memory.py [--articles 100000] [--readers 1000000]

Loads the articles (every one with all six reactions counted) and the reader choices through
the real vote script into an embedded Redis, then reports bytes per article's counters
(`MEMORY USAGE` of the counts hash, sampled) and per reader choice (growth of `used_memory`
per choice, which includes the readers' own index, and `MEMORY USAGE` of reader hashes and of
the index's buckets), with each key's encoding. Readers are named by their HMAC, as the
server names them. The reference in the same run is the same data as plain Redis strings (one
key per counter), the naive layout. Goals: at most 200 bytes per article's counters, in
Redis's compact hash encoding; at most 60 bytes of growth per reader choice.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from widget import create_app  # noqa: E402
from widget.embedded_redis import EmbeddedRedis  # noqa: E402
from widget.store import (  # noqa: E402
    VOTE_SCRIPT,
    Limits,
    counts_key,
    readers_key,
    vote_arguments,
)

try:  # the readers' own index, where this version has one
    from widget.store import article_numbers_key, own_key  # noqa: E402
except ImportError:
    article_numbers_key = own_key = None


def vote_all(store, votes, now) -> None:
    site = store.get_site("demo")
    sha = store.client.script_load(VOTE_SCRIPT)
    pipe = store.client.pipeline(transaction=False)
    for article, name, reaction in votes:
        reader = store.reader_hash("demo", name)  # as the server names a reader
        keys, args = vote_arguments(site, article, reader, reaction, "", "", now, "", Limits())
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--readers", type=int, default=1_000_000)
    options = parser.parse_args()
    rng = random.Random(3)
    ids = ["happy", "sad", "excited", "sleepy", "angry", "surprise"]
    now = time.time()

    with tempfile.TemporaryDirectory() as data, EmbeddedRedis(data, persistent=False) as server:
        # A patient client: a pipeline of 5,000 votes takes longer than the server's deadline.
        app = create_app({"REDIS_URL": server.url, "REACTIONS_REDIS_TIMEOUT": 30})
        store = app.extensions["reactions"]
        # Measuring walks big hashes: a patient client, not the server's 0.5 s one.
        client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=120)
        started = time.perf_counter()
        # Every article gets one vote per reaction: all six counters exist.
        vote_all(
            store,
            (
                (f"article-{a:06d}", f"seed-{a}-{r}", r)
                for a in range(options.articles)
                for r in ids
            ),
            now,
        )
        after_articles = client.info("memory")["used_memory"]
        # Then the reader choices, spread over the articles with a long tail.
        weights = [1 / (rank + 1) ** 0.8 for rank in range(options.articles)]
        targets = rng.choices(range(options.articles), weights=weights, k=options.readers)
        vote_all(
            store,
            (
                (f"article-{a:06d}", f"reader-{n:07d}", rng.choice(ids))
                for n, a in enumerate(targets)
            ),
            now,
        )
        after_readers = client.info("memory")["used_memory"]
        seconds = time.perf_counter() - started

        sample = rng.sample(range(options.articles), 2000)
        counts = [client.memory_usage(counts_key("demo", f"article-{a:06d}")) for a in sample]
        encodings = {
            client.object("encoding", counts_key("demo", f"article-{a:06d}")) for a in sample
        }
        reader_hashes = [readers_key("demo", f"article-{a:06d}") for a in sample]
        reader_bytes = sum(client.memory_usage(k, samples=0) for k in reader_hashes)
        reader_entries = sum(client.hlen(k) for k in reader_hashes)
        reader_encodings = {client.object("encoding", k) for k in reader_hashes}
        if own_key:
            buckets = {own_key("demo", f"{n:04x}") for n in rng.sample(range(65536), 2000)}
            own_bytes = sum(client.memory_usage(k, samples=0) or 0 for k in buckets)
            own_entries = sum(client.hlen(k) for k in buckets)
            own_encodings = {client.object("encoding", k) for k in buckets if client.exists(k)}
            numbers = client.memory_usage(article_numbers_key("demo"), samples=0)

        # The naive reference: one string key per counter, for the same sample (in db 1).
        naive_db = redis.Redis.from_url(server.url, db=1, socket_timeout=120)
        base = client.info("memory")["used_memory"]
        pipe = naive_db.pipeline(transaction=False)
        for a in sample:
            for r in ids:
                pipe.set(f"naive:demo:{a}:{r}", rng.randint(1, 500))
        pipe.execute()
        naive = (client.info("memory")["used_memory"] - base) / len(sample)

    per_article = sum(counts) / len(counts)
    print(f"{options.articles:,} articles x 6 reactions, {options.readers:,} reader choices "
          f"(loaded in {seconds:.0f} s)\n")  # fmt: skip
    print(f"counts hash per article (MEMORY USAGE):   {per_article:7.1f} bytes  "
          f"encoding {', '.join(sorted(encodings))}")  # fmt: skip
    print(f"naive reference, 6 string keys/article:   {naive:7.1f} bytes  "
          f"(the hash takes {per_article / naive:.2f} x)")  # fmt: skip
    print(f"reader choice, in its article's hash:     {reader_bytes / reader_entries:7.1f} bytes  "
          f"encoding {', '.join(sorted(reader_encodings))}")  # fmt: skip
    if own_key:
        print(f"own index entry per reader (bucket):      {own_bytes / own_entries:7.1f} bytes  "
              f"encoding {', '.join(sorted(own_encodings))}, "
              f"{own_entries / len(buckets):.1f} readers a bucket")  # fmt: skip
        print(
            f"article numbers (id by number) per article: {numbers / options.articles:5.1f} bytes"
        )
    print(
        f"used_memory growth per reader choice:     "
        f"{(after_readers - after_articles) / options.readers:7.1f} bytes (all keys a vote touches)"
    )
    print(
        f"used_memory per article after the seed:   {after_articles / options.articles:7.1f} bytes "
        "(counts, readers, indexes, day buckets, meta)"
    )


if __name__ == "__main__":
    main()
