"""Who may write: the site's origin allowlist, the JSON-only rule, and the CORS headers.

CORS for writes is decided per site from the body, which flask-cors' static origin lists
cannot express, so the write path sets its headers here; reads use flask-cors with `*`.
"""

from __future__ import annotations

from flask import Request, Response

from .reactions import OriginNotAllowed, UnsupportedMediaType
from .store import Site

PREFLIGHT_MAX_AGE = 7200


def own_origin(request: Request) -> str:
    return request.host_url.rstrip("/")


def require_json(request: Request) -> None:
    """Only `application/json` writes: a form or `text/plain` POST from a foreign page cannot
    be sent without a CORS preflight, which a foreign origin does not pass."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as Content-Type: application/json")


def require_allowed_origin(request: Request, site: Site) -> str:
    origin = request.headers.get("Origin")
    if not site.allows(origin, own_origin(request)):
        if not origin:
            raise OriginNotAllowed("writes must come from a browser page (Origin header)")
        raise OriginNotAllowed(f"origin {origin} is not allowed for site '{site.name}'")
    return origin


def allow_write_origin(response: Response, origin: str) -> Response:
    """The exact allowed origin, never `*` and never credentials."""
    response.headers["Access-Control-Allow-Origin"] = origin
    response.vary.add("Origin")
    return response


def preflight(request: Request) -> Response:
    """Answer a write preflight for any http(s) origin; the POST itself is checked against
    the site's allowlist, which the preflight (no body) cannot know."""
    response = Response(status=204)
    origin = request.headers.get("Origin", "")
    response.vary.add("Origin")
    if origin.startswith(("http://", "https://")):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response
