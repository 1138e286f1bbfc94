"""Figures for Prometheus: `GET /metrics` in its text format, for operators only.

Under `reactions serve` every gunicorn worker writes its figures to files in the directory
named by PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode), which serve
creates afresh before gunicorn starts, and /metrics adds them up whichever worker answers.
Without that directory (the Flask test client, a single process) /metrics serves the
process's own figures.
"""

from __future__ import annotations

import hmac
import os
import time

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily

from . import errors

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Written by `reactions serve`, which is no gunicorn worker, into the multiprocess directory.
RESTARTS_FILE = "embedded-redis-restarts"

VOTES = Counter(
    "reactions_votes",
    "Votes answered: counted, or not counted (a self-declared bot).",
    ["outcome"],
)
VOTES_COUNTED = VOTES.labels("counted")
VOTES_NOT_COUNTED = VOTES.labels("not_counted")
VOTES_REFUSED = Counter(
    "reactions_votes_refused",
    "Votes refused, by the error code answered (origin_not_allowed, unsupported_media_type, "
    "rate_limited, invalid_field, ...).",
    ["reason"],
)
REQUESTS = Counter(
    "reactions_requests", "Requests answered, by endpoint and status.", ["endpoint", "status"]
)
LATENCY = Histogram(
    "reactions_request_seconds",
    "Time to answer a request (a live stream: to open it), by endpoint.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
STREAMS = Gauge(
    "reactions_live_streams",
    "Live-update streams open, summed over the workers.",
    multiprocess_mode="livesum",
)
LIVE_EVENTS = Counter(
    "reactions_live_events",
    "Live-update events encoded: one per article and change sent, whatever its audience.",
)
LIVE_WRITES = Counter(
    "reactions_live_writes",
    "Live-update events handed to open streams (the fan-out): at most about "
    "REACTIONS_LIVE_WRITES_PER_SECOND a second per process.",
)
REDIS_SECONDS = Histogram(
    "reactions_redis_seconds",
    "Time of the Redis calls that answer a vote.",
    ["call"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5),
)
REDIS_VOTE_SECONDS = REDIS_SECONDS.labels("set_reaction")
REDIS_COUNTS_SECONDS = REDIS_SECONDS.labels("counts")
REDIS_ERRORS = Counter(
    "reactions_redis_errors", "Requests answered 503 because Redis failed, by error.", ["error"]
)

VOTE_ENDPOINT = "api.post_reaction"

bp = Blueprint("metrics", __name__)


def setup(app: Flask) -> None:
    """Counts every request by endpoint and status and times it, in two cheap hooks."""

    @app.before_request
    def start_timer() -> None:
        request.environ["reactions.started"] = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        started = request.environ.get("reactions.started")
        requests, latency = answer_figures(request.endpoint, response.status_code)
        requests.inc()
        if started is not None:
            latency.observe(time.perf_counter() - started)
        return response

    app.register_blueprint(bp)


# The figures of each (endpoint, status) answered so far: looking them up by their labels
# took a third of the metrics' time per request. Endpoints and statuses are few.
_by_answer: dict[tuple[str | None, int], tuple] = {}


def answer_figures(endpoint: str | None, status: int) -> tuple:
    """The request counter and latency histogram of the answer's endpoint and status."""
    figures = _by_answer.get((endpoint, status))
    if figures is None:
        label = endpoint or "unmatched"
        figures = (REQUESTS.labels(label, status), LATENCY.labels(label))
        _by_answer[(endpoint, status)] = figures
    return figures


def vote_refused(reason: str) -> None:
    """Counts a refused vote; the error handlers call it for every error, of any request."""
    if request.endpoint == VOTE_ENDPOINT:
        VOTES_REFUSED.labels(reason).inc()


def embedded_redis_restarted(directory: str) -> None:
    """Adds one to the embedded Redis's restarts, which `reactions serve` counts."""
    path = os.path.join(directory, RESTARTS_FILE)
    staged = path + ".new"
    with open(staged, "w") as handle:
        handle.write(str(embedded_redis_restarts(directory) + 1))
    os.replace(staged, path)


def embedded_redis_restarts(directory: str) -> int:
    try:
        with open(os.path.join(directory, RESTARTS_FILE)) as handle:
            return int(handle.read() or 0)
    except (OSError, ValueError):
        return 0


class EmbeddedRedisRestarts:
    """The restarts `reactions serve` wrote down, as a counter of the exposition."""

    def __init__(self, directory: str):
        self.directory = directory

    def collect(self):
        family = CounterMetricFamily(
            "reactions_embedded_redis_restarts",
            "Times `reactions serve` restarted the embedded Redis after it died.",
        )
        family.add_metric([], embedded_redis_restarts(self.directory))
        yield family


def exposition() -> bytes:
    directory = os.environ.get(MULTIPROC_DIR)
    if not directory:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    registry.register(EmbeddedRedisRestarts(directory))
    return generate_latest(registry)


@bp.get("/metrics")
def metrics():
    """Only with REACTIONS_METRICS_TOKEN set, and only to requests that send it as a bearer
    token: the figures tell how busy the server is and what it refuses."""
    token = current_app.config["REACTIONS_METRICS_TOKEN"]
    if not token:
        return errors.error_response(
            404, "not_found", "metrics are served only when REACTIONS_METRICS_TOKEN is set"
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        response = errors.error_response(
            401, "unauthorized", "send the metrics token as Authorization: Bearer <token>"
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    response = Response(exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response.headers["Cache-Control"] = "no-store"
    return response
