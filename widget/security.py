"""Who may write: the site's origin allowlist, the JSON-only rule, and the CORS headers.

CORS for writes is decided per site from the body, which flask-cors' static origin lists
cannot express, so the write path sets its headers here. Reads answer `*`: the batch through
flask-cors, the single-article GET by itself (api.get_reactions says why).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
import time

from crawlerdetect import CrawlerDetect
from flask import Request, Response, request, session
from flask.sessions import SecureCookieSessionInterface
from redis import RedisError
from werkzeug.security import check_password_hash, generate_password_hash

from .reactions import CsrfFailed, OriginNotAllowed, UnsupportedMediaType
from .store import Site, Store, utc_day

PREFLIGHT_MAX_AGE = 7200


def own_origin(request: Request) -> str:
    return f"{request.scheme}://{request.host}"


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
        raise OriginNotAllowed(
            f"origin {origin} is not allowed for site '{site.name}'; its owner can allow it "
            f"with: reactions sites origins add {site.name} {origin}"
        )
    return origin


def readable_origin(request: Request) -> str | None:
    """The page's origin when it is one a browser may be told it can read the answer: an
    http(s) origin, as the preflight allows; never `null` or a missing one."""
    origin = request.headers.get("Origin", "")
    return origin if origin.startswith(("http://", "https://")) else None


# HTTP clients that CrawlerDetect's list does not name: the fetch of Node (`node`, `undici`),
# Deno and Bun, Java's own client, and the Insomnia API tool.
UNLISTED_AGENTS = re.compile(
    r"^(?:node|undici|deno|bun|insomnia)\b|java-http-client", re.IGNORECASE
)
# Browsers send a few hundred characters at most, in-app browsers included. The list's check
# takes longer the longer the agent (about 20 µs a character of random text), so an agent
# longer than this is not a browser's and is not checked.
MAX_BROWSER_AGENT = 512
_CRAWLERS = CrawlerDetect()


def is_automated(request: Request) -> bool:
    """Self-declared bots, crawlers, link previews, headless browsers and HTTP libraries
    (CrawlerDetect's maintained list, and an empty or oversized agent): they may read
    counts, but their votes are not counted."""
    return is_automated_agent(request.headers.get("User-Agent", ""))


@functools.lru_cache(maxsize=4096)
def is_automated_agent(agent: str) -> bool:
    """Cached per process: the list is one pattern of some 1,500 alternatives, 0.1 to 0.5 ms
    for a real agent, and a site's readers send few distinct user agents."""
    agent = agent.strip()
    return (
        not agent
        or len(agent) > MAX_BROWSER_AGENT
        or bool(UNLISTED_AGENTS.search(agent))
        or _CRAWLERS.is_crawler(agent)
    )


def allow_write_origin(response: Response, origin: str) -> Response:
    """The exact allowed origin, never `*` and never credentials."""
    headers = response.headers
    headers["Access-Control-Allow-Origin"] = origin
    # Without a Vary yet (the usual case), what vary.add would write, appended: werkzeug's
    # `in` raises and catches a KeyError for an absent header, and setting one first looks
    # for it. 29,000 instructions a vote (valgrind), now 16,500.
    if headers.getlist("Vary"):
        response.vary.add("Origin")
    else:
        headers.add("Vary", "Origin")
    return response


def preflight(request: Request) -> Response:
    """Answer a write preflight for any http(s) origin; the POST itself is checked against
    the site's allowlist, which the preflight (no body) cannot know."""
    response = Response(status=204)
    origin = readable_origin(request)
    response.vary.add("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response


# Clients and addresses of the rate limits and the login lock-out; CSRF tokens and passwords --


def client_fingerprint(store: Store, request: Request) -> str:
    """A hash of address + user agent under a salt that changes every UTC day: one browser.

    Enough to count requests per client for a day; the raw address and user agent are never
    stored, and after the salt expires the hashes cannot be linked back. The user agent is
    the client's to choose, so a limit on this alone can be dodged: see address_fingerprint.
    """
    salt = store.daily_salt(utc_day(time.time()))
    return fingerprint(salt, client_address(request), request.headers.get("User-Agent", ""))


def address_fingerprint(store: Store, request: Request) -> str:
    """A hash of the client's address block alone (`address_block`), under the same daily
    salt: no header the client sends changes it."""
    salt = store.daily_salt(utc_day(time.time()))
    return fingerprint(salt, address_block(client_address(request)), "")


@functools.lru_cache(maxsize=4096)
def fingerprint(salt: str, address: str, agent: str) -> str:
    """Cached per process: a reader sends several requests, and each paid for an HMAC."""
    message = f"{address}\0{agent}"
    return hmac.new(salt.encode(), message.encode(), hashlib.sha256).hexdigest()[:24]


def client_address(request: Request) -> str:
    """The client's address in one canonical spelling (IPv6 compressed, IPv4-mapped IPv6 as
    IPv4), so that one client cannot get several rate limits by respelling its address.

    Behind REACTIONS_TRUSTED_PROXIES proxies, ProxyFix has already taken it from
    X-Forwarded-For; otherwise that header is ignored.
    """
    return canonical_address(request.remote_addr or "")


@functools.lru_cache(maxsize=4096)
def canonical_address(remote_addr: str) -> str:
    raw = remote_addr.strip().strip("[]")
    try:
        address = ipaddress.ip_address(raw.split("%")[0])
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


@functools.lru_cache(maxsize=4096)
def address_block(address: str) -> str:
    """What one subscriber controls: an IPv4 address, or the /64 of an IPv6 address (a home
    or a phone is given a whole /64 and may pick any address in it)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


def is_loopback(request: Request) -> bool:
    """Whether the client is on the server's own machine (or comes through an SSH tunnel)."""
    try:
        return ipaddress.ip_address(client_address(request)).is_loopback
    except ValueError:
        return False


def csrf_token() -> str:
    """The session's CSRF token, put into every admin form."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf(request: Request) -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed("the form's CSRF token is missing or stale; reload the page and retry")


def password_matches(password: str, configured: str, stored_hash: str | None) -> bool:
    """REACTIONS_ADMIN_PASSWORD wins; else the salted hash from `reactions admin set-password`."""
    if configured:
        return hmac.compare_digest(password.encode(), configured.encode())
    if stored_hash:
        return check_password_hash(stored_hash, password)
    return False


def hash_password(password: str) -> str:
    return generate_password_hash(password)  # werkzeug: salted scrypt


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, only under /admin, `Secure` whenever over HTTPS.

    It is signed with a key derived from the server secret shared in Redis, so every worker
    and app server accepts the same login without a configured Flask SECRET_KEY.
    """

    def open_session(self, app, request):
        if not request.path.startswith("/admin"):
            return None  # the public API has no sessions
        if not app.secret_key:
            try:
                app.secret_key = app.extensions["reactions"].keyed_hash("admin-session")
            except RedisError:
                return None  # the admin's before_request answers 503
        return super().open_session(app, request)

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or (request and request.is_secure))
