"""One place that turns errors into JSON `{error, detail}` with the right status."""

from __future__ import annotations

import time

import redis
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import metrics
from .reactions import ReactionsError
from .store import RateLimited


def error_response(status: int, code: str, detail: str):
    metrics.vote_refused(code)
    response = jsonify(error=code, detail=detail)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def register(app: Flask) -> None:
    @app.errorhandler(ReactionsError)
    def client_error(error: ReactionsError):
        return error_response(error.status, error.code, error.detail)

    last_warning = [0.0]

    # redis-py's cluster client raises RedisClusterException, which is no RedisError, when no
    # node of the cluster answers.
    @app.errorhandler(redis.RedisClusterException)
    @app.errorhandler(redis.RedisError)
    def store_unavailable(error: redis.RedisError | redis.RedisClusterException):
        # One line per outage and per 10 s, not one per request: an outage under load must
        # not flood (or block on) the log.
        now = time.monotonic()
        if now - last_warning[0] > 10:
            last_warning[0] = now
            current_app.logger.warning("redis unavailable: %s", type(error).__name__)
        metrics.REDIS_ERRORS.labels(type(error).__name__).inc()
        response = error_response(
            503, "store_unavailable", "the reaction store is unreachable; try again shortly"
        )
        response.headers["Retry-After"] = str(current_app.config["REACTIONS_RETRY_AFTER"])
        return response

    @app.errorhandler(RateLimited)
    def rate_limited(error: RateLimited):
        detail = {
            "client": "too many reactions from this browser; wait a little",
            "address": "too many reactions from this network; wait a little",
            "site": "this site is taking too many reactions right now; try again shortly",
            "articles": "this site gained too many new articles this hour",
            "own": "too many reads of readers' own reactions from this network; wait a little",
        }[error.scope]
        response = error_response(429, "rate_limited", detail)
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if not request.path.startswith(("/api/", "/healthz", "/readyz")):
            return error
        response = error_response(
            error.code or 500,
            (error.name or "error").lower().replace(" ", "_"),
            error.description or "",
        )
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response
