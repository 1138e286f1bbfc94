"""Admin page render time with 10,000 articles and 1,000,000 reactions in one site.

    .venv/bin/python bench/admin.py [--articles 10000] [--reactions 1000000]

Loads the data through the real vote script (one reader per reaction, spread over 90 days),
then times each admin view in-process (Flask test client, so the network is not measured)
against a thin reference measured in the same run: a bare view that reads the top 50
articles with one pipeline and renders a plain table. Prints median and p95 in ms, and the
ratio to the reference. Goal: every page under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from flask import render_template_string  # noqa: E402

from widget import create_app  # noqa: E402
from widget.embedded_redis import EmbeddedRedis  # noqa: E402
from widget.store import VOTE_SCRIPT, Limits, counts_key, index_key, vote_arguments  # noqa: E402

PASSWORD = "benchmark-password"
REPEATS = 15


def load(store, articles: int, reactions: int) -> float:
    """Votes through the real script, pipelined; returns seconds taken."""
    site = store.get_site("demo")
    ids = [r.id for r in site.reactions]
    rng = random.Random(1)
    # A long tail: a few articles get most reactions, as on a real blog.
    weights = [1 / (rank + 1) ** 0.8 for rank in range(articles)]
    chosen = rng.choices(range(articles), weights=weights, k=reactions)
    now = time.time()
    sha = store._vote.sha
    store.client.script_load(VOTE_SCRIPT)
    started = time.perf_counter()
    pipe = store.client.pipeline(transaction=False)
    for number, article_number in enumerate(chosen):
        article = f"article-{article_number:05d}"
        keys, args = vote_arguments(
            site, article, f"reader{number:07d}", rng.choice(ids),
            f"https://blog.example/{article}", f"Article number {article_number}",
            now - (number % 90) * 86400, "", Limits(),
        )  # fmt: skip
        # The vote script itself, without redis-py's per-call Script bookkeeping.
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    store.fold("demo")  # the last votes' statistics, as the admin pages would
    return time.perf_counter() - started


def timed(client, path: str) -> list[float]:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(path)
        response.get_data()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--reactions", type=int, default=1_000_000)
    options = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as data,
        EmbeddedRedis(data, persistent=False) as redis_server,
    ):
        app = create_app({"REDIS_URL": redis_server.url, "REACTIONS_ADMIN_PASSWORD": PASSWORD})
        store = app.extensions["reactions"]

        @app.get("/bench/reference")
        def reference():
            top = store.client.zrevrange(index_key("demo"), 0, 49, withscores=True)
            pipe = store.client.pipeline(transaction=False)
            for article, _ in top:
                pipe.hgetall(counts_key("demo", article))
            rows = zip(top, pipe.execute(), strict=True)
            return render_template_string(
                "<table>{% for (a, s), c in rows %}<tr><td>{{ a }}</td><td>{{ s }}</td>"
                "<td>{{ c }}</td></tr>{% endfor %}</table>",
                rows=rows,
            )

        seconds = load(store, options.articles, options.reactions)
        info = store.client.info("memory")
        print(
            f"loaded {options.reactions:,} reactions on {options.articles:,} articles in "
            f"{seconds:.1f} s ({options.reactions / seconds:,.0f} votes/s pipelined); "
            f"Redis uses {info['used_memory'] / 2**20:,.0f} MiB"
        )
        client = app.test_client()
        page = client.get("/admin/login").get_data(as_text=True)
        csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
        client.post("/admin/login", data={"password": PASSWORD, "csrf_token": csrf})

        views = {
            "reference: top 50, bare table": "/bench/reference",
            "sites": "/admin/",
            "site, top 50 by total, 30-day chart": "/admin/sites/demo",
            "site, sorted by happy, 90-day chart": "/admin/sites/demo?sort=happy&days=90",
            "site, page 150 of 200": "/admin/sites/demo?page=150",
            "site, search 'number 12'": "/admin/sites/demo?q=number%2012",
            "article, 90-day chart": "/admin/sites/demo/article?id=article-00000&days=90",
            "export CSV, all articles": "/admin/sites/demo/export.csv",
            "export JSON, all articles": "/admin/sites/demo/export.json",
        }
        results = {name: timed(client, path) for name, path in views.items()}
        reference_ms = statistics.median(results["reference: top 50, bare table"])
        print(f"\n{'view':40} {'median ms':>10} {'p95 ms':>8} {'× ref':>7}")
        for name, samples in results.items():
            samples.sort()
            median = statistics.median(samples)
            p95 = samples[int(len(samples) * 0.95) - 1]
            print(f"{name:40} {median:10.1f} {p95:8.1f} {median / reference_ms:7.1f}")


if __name__ == "__main__":
    main()
