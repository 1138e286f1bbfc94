"""One place that turns errors into JSON `{error, detail}` with the right status."""

from __future__ import annotations

import logging

import redis
from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import logs, metrics, security
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

    outage = logs.Outage()
    bursts = logs.Throttle()

    # A vote counted or /readyz answered: Redis answers this process's requests again.
    @app.after_request
    def redis_back(response):
        if (
            outage.since is not None
            and response.status_code < 300
            and request.endpoint
            in (
                "api.post_reaction",
                "health.readyz",
            )
        ):
            outage.back()
        return response

    # redis-py's cluster client raises RedisClusterException, which is no RedisError, when no
    # node of the cluster answers.
    @app.errorhandler(redis.RedisClusterException)
    @app.errorhandler(redis.RedisError)
    def store_unavailable(error: redis.RedisError | redis.RedisClusterException):
        outage.lost(error)  # one line per outage, not one per request
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
        log_burst(bursts, error)
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


def log_burst(bursts: logs.Throttle, error: RateLimited) -> None:
    """One line for the first refusal of a burst, then at most one per site and reason per
    minute, with how many were refused: an address only as its fingerprint."""
    refused = bursts.passes((error.site, error.scope))
    if refused:
        logs.event(
            "rate_limit.burst",
            "requests refused by a rate limit",
            logging.WARNING,
            site=error.site,
            reason=error.scope,
            refused=refused,
            address=security.address_fingerprint(current_app.extensions["reactions"], request),
        )
