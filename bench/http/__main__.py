"""HTTP throughput and latency of the product against a thin reference, in one run.

    .venv/bin/python bench/http [--seconds 5] [--rounds 5] [--connections 32]
                                [--redis-priority realtime|normal]

Needs wrk (apt-get install wrk). Starts one embedded Redis as `reactions serve` starts it (AOF,
real-time priority where the system allows it), then two gunicorn servers with the settings
of `reactions serve` (2 gevent workers, widget/gunicorn_conf.py): the thin reference
(bench/http/thin_app.py: POST = one HINCRBY + HGETALL pipeline, GET = one HGETALL) and the
product. Each round runs every load with wrk for a fixed time (bounded): the thin POST right
before and right after the vote, the thin GET right before and right after the counts GETs,
so slow spells of a shared machine hit both sides of a ratio. It prints the median over the
rounds of requests/s, p50 and p99 latency, and of the product ÷ thin ratio taken within each
round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from widget.config import DEFAULTS, REDIS_PRIORITY_CHOICES  # noqa: E402
from widget.embedded_redis import EmbeddedRedis  # noqa: E402
from widget.serving import GUNICORN_CONF as CONF  # noqa: E402

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36"
WORKER_CLASSES = {
    "gevent": ["--worker-class", "gevent", "--workers", "2", "--worker-connections", "2000"],
    "gthread": ["--worker-class", "gthread", "--workers", "2", "--threads", "16"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn(app: str, port: int, env: dict, workers: list[str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *workers,
         "--no-control-socket", "--config", f"file:{CONF}",
         "--pythonpath", f"{ROOT},{HERE}", app],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except urllib.error.HTTPError:
            return process  # it answers (404 or a redirect is fine)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{app} did not start")


def wrk(
    url: str, seconds: int, connections: int, script: str | None = None, headers=(), args=()
) -> dict:
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    if script:
        command += ["-s", os.path.join(HERE, script)]
    command += [url, *(["--", *args] if args else [])]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency(re.search(r"\s50%\s+([\d.]+\w+)", output).group(1)),
        "p99": latency(re.search(r"\s99%\s+([\d.]+\w+)", output).group(1)),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


def latency(text: str) -> float:
    """wrk's "1.23ms" / "456.00us" / "1.02s" in milliseconds."""
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


THIN_POST = "thin POST (HINCRBY+HGETALL)"
THIN_GET = "thin GET (HGETALL)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per load and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--worker-class", choices=sorted(WORKER_CLASSES), default="gevent")
    parser.add_argument(
        "--redis-priority",
        choices=REDIS_PRIORITY_CHOICES,
        default=DEFAULTS["REACTIONS_REDIS_PRIORITY"],
        help="the embedded Redis's, as REACTIONS_REDIS_PRIORITY sets it for `reactions serve`",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every round's figures here")
    options = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/http needs wrk: apt-get install wrk")

    with (
        tempfile.TemporaryDirectory() as data,
        EmbeddedRedis(data, priority=options.redis_priority) as redis_server,
    ):
        options.redis_note = redis_server.priority_note
        thin_port, product_port = free_port(), free_port()
        env = {
            "REDIS_URL": redis_server.url,
            "REACTIONS_RATE_PER_MINUTE": "10000000",
            "REACTIONS_ADDRESS_RATE_PER_MINUTE": "10000000",
            "REACTIONS_SITE_RATE_PER_SECOND": "10000000",
            "REACTIONS_NEW_ARTICLES_PER_HOUR": "10000000",
        }
        workers = WORKER_CLASSES[options.worker_class]
        servers = [
            gunicorn("thin_app:app", thin_port, env, workers),
            gunicorn("widget:create_app()", product_port, env, workers),
        ]
        try:
            rounds = measure(
                f"http://127.0.0.1:{thin_port}", f"http://127.0.0.1:{product_port}", options
            )
        finally:
            for server in servers:
                os.killpg(server.pid, signal.SIGTERM)
            for server in servers:
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    print(f"{server.args[-1]} did not stop in 30 s: killed", file=sys.stderr)
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
    report(rounds, options)
    if options.json:
        with open(options.json, "w") as out:
            json.dump(rounds, out, indent=1)


def measure(thin: str, product: str, options) -> list[dict[str, dict]]:
    """Every load once per round; a round's thin and product runs are minutes apart at most."""
    json_headers = ["Content-Type: application/json", f"User-Agent: {UA}"]
    vote_headers = [*json_headers, f"Origin: {product}"]
    batch = "&".join(f"article=post-{n}" for n in range(20))
    counts_url = f"{product}/api/v1/reactions?site=demo&article=bench"

    def run(url: str, **kw) -> dict:
        return wrk(url, options.seconds, options.connections, **kw)

    def thin_post(number: int) -> dict:
        # The vote's own requests (wrk builds each in Lua, which costs wrk more per request
        # than a fixed body): only the server's work differs between the two.
        return run(thin, script="vote.lua", headers=vote_headers, args=[f"thin{number}", "/vote"])

    def thin_get() -> dict:
        return run(f"{thin}/counts")

    # Warm both servers (imports, script load, connection pools) before measuring.
    thin_get()
    run(counts_url)
    rounds = []
    for number in range(options.rounds):
        # The references run right before and right after the loads measured against them,
        # and count as the mean of the two: a machine that speeds up or slows down within a
        # round then moves both sides of a ratio alike.
        before = thin_post(number)
        vote = run(product, script="vote.lua", headers=vote_headers, args=[str(number)])
        results = {THIN_POST: mean_run(before, thin_post(number))}
        before = thin_get()
        counts = run(counts_url, headers=[f"User-Agent: {UA}"])
        # The counts changed during this round's votes: revalidate against the current ETag.
        etag = urllib.request.urlopen(counts_url).headers["ETag"]
        not_modified = run(counts_url, headers=[f"If-None-Match: {etag}"])
        results[THIN_GET] = mean_run(before, thin_get())
        results["vote POST, distinct readers"] = vote
        results["counts GET"] = counts
        results["counts GET, If-None-Match (304)"] = not_modified
        results["batch GET, 20 articles"] = run(
            f"{product}/api/v1/reactions/batch?site=demo&{batch}"
        )
        results["GET /embed.js"] = run(f"{product}/embed.js")
        rounds.append(results)
        print(f"round {number + 1} of {options.rounds} done", file=sys.stderr)
    return rounds


def mean_run(first: dict, second: dict) -> dict:
    return {
        key: first[key] + second[key] if key == "errors" else (first[key] + second[key]) / 2
        for key in first
    }


def report(rounds: list[dict[str, dict]], options) -> None:
    print(
        f"{options.connections} connections, {options.rounds} rounds of {options.seconds} s "
        f"per load, 2 {options.worker_class} workers, Redis at {options.redis_note}; "
        "medians over the rounds\n"
    )
    print(f"{'endpoint':34} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'÷ thin':>7}")
    for name in rounds[0]:
        runs = [r[name] for r in rounds]
        reference = THIN_POST if "POST" in name else THIN_GET
        ratios = [r[name]["rps"] / r[reference]["rps"] for r in rounds]
        ratio = "" if name.startswith("thin") else f"{statistics.median(ratios):7.2f}"
        errors = sum(run["errors"] for run in runs)
        note = f"  ({errors} non-2xx/3xx)" if errors else ""
        rps, p50, p99 = (
            statistics.median(run[key] for run in runs) for key in ("rps", "p50", "p99")
        )
        print(f"{name:34} {rps:8.0f} {p50:7.2f} {p99:7.2f} {ratio:>7}{note}")


if __name__ == "__main__":
    main()
