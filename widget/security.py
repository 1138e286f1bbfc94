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
from urllib.parse import urlsplit, urlunsplit

from crawlerdetect import CrawlerDetect
from flask import Request, Response, current_app, request, session
from flask.sessions import SecureCookieSessionInterface
from redis import RedisError
from werkzeug.security import check_password_hash, generate_password_hash

from .reactions import CsrfFailed, OriginNotAllowed, UnsupportedMediaType
from .store import SELF_ORIGIN, Site, Store, utc_day

PREFLIGHT_MAX_AGE = 7200
DEFAULT_PORTS = {"http": 80, "https": 443}
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?|[0-9a-f:.]*:[0-9a-f:.]*")


def own_origin(request: Request, site: Site, origin: str | None) -> str | None:
    """`origin` when the site allows `self` and it is this server's own (is_own_origin), to
    give Site.allows; else None."""
    if origin and SELF_ORIGIN in site.origins and is_own_origin(request, origin):
        return origin
    return None


def is_own_origin(request: Request, origin: str) -> bool:
    """Whether `origin` is this server's own, the one a site allowing `self` (the demo)
    accepts: REACTIONS_PUBLIC_URL's, or the request's scheme and Host when that Host is one
    of REACTIONS_ALLOWED_HOSTS (by default the loopback names, for a server run locally).

    Never a Host the settings do not name: through DNS rebinding, a page of any origin
    reaches this server under its own name, and its Origin then matches its Host.
    """
    config = current_app.config
    public = config["REACTIONS_PUBLIC_URL"]
    if public and origin == (page_url(public) or ("",))[0]:
        return True
    host = request.host.lower()
    allowed = config["REACTIONS_ALLOWED_HOSTS"]
    name = host.rpartition(":")[0] if host.rpartition(":")[2].isdigit() else host
    return (host in allowed or name in allowed) and origin == f"{request.scheme}://{host}"


@functools.lru_cache(maxsize=4096)
def page_url(url: str) -> tuple[str, str] | None:
    """(origin, URL) of an http(s) URL, both as a browser writes them: scheme and host in
    lower case, no default port, and the URL without its fragment. None for anything else,
    a URL with a user name included (`https://blog.example.com@evil.test/` is on evil.test).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bracket without its pair, a port that is no number
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or "@" in parts.netloc:
        return None
    if not HOST_NAME.fullmatch(parts.hostname or ""):
        return None  # what a browser would decode or split differently (`%2e`, `\\`)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host += f":{port}"
    origin = f"{scheme}://{host}"
    return origin, origin + urlunsplit(("", "", parts.path, parts.query, ""))


def allowed_page_url(request: Request, site: Site, url: str) -> str | None:
    """The article's URL (as `page_url` spells it) when the site allows its origin; `""`
    stays `""`; None for a URL on any other origin.

    The admin shows it as the article's link, so a vote cannot point the admin to a page the
    site does not own. The vote itself still counts: a reader whose page names a canonical
    URL on another origin (a mirror, an AMP cache) is no attacker.
    """
    if not url:
        return ""
    origin, spelled = page_url(url) or (None, "")
    if not site.allows(origin, own_origin(request, site, origin)):
        return None
    return spelled


def require_json(request: Request) -> None:
    """Only `application/json` writes: a form or `text/plain` POST from a foreign page cannot
    be sent without a CORS preflight, which a foreign origin does not pass."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as Content-Type: application/json")


def require_allowed_origin(request: Request, site: Site) -> str:
    origin = request.headers.get("Origin")
    if not site.allows(origin, own_origin(request, site, origin)):
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
# takes time in proportion to the agent's length, so an agent longer than this is not a
# browser's and is not checked.
MAX_BROWSER_AGENT = 512
_CRAWLERS = CrawlerDetect()


def is_automated(request: Request) -> bool:
    """Self-declared bots, crawlers, link previews, headless browsers and HTTP libraries
    (CrawlerDetect's maintained list, and an empty or oversized agent): they may read
    counts, but their votes are not counted."""
    return is_automated_agent(request.headers.get("User-Agent", ""))


@functools.lru_cache(maxsize=4096)
def is_automated_agent(agent: str) -> bool:
    """Cached per process: the list is one pattern of some 1,500 alternatives, slow to match
    against every vote, and a site's readers send few distinct user agents."""
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
    # for it, which made this a noticeable part of a vote.
    if headers.getlist("Vary"):
        response.vary.add("Origin")
    else:
        headers.add("Vary", "Origin")
    return response


def preflight(
    request: Request, methods: str = "GET, POST", headers: str = "Content-Type"
) -> Response:
    """Answer a write preflight for any http(s) origin; the request itself is checked against
    the site's allowlist, which the preflight (no body) cannot know."""
    response = Response(status=204)
    origin = readable_origin(request)
    response.vary.add("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = methods
        response.headers["Access-Control-Allow-Headers"] = headers
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


def password_tag(app, store: Store) -> str:
    """Tells REACTIONS_ADMIN_PASSWORD's values apart without revealing them ("" without
    one: a stored password's change ends every login in Redis)."""
    configured = app.config["REACTIONS_ADMIN_PASSWORD"]
    return store.keyed_hash(f"admin-password\0{configured}")[:16] if configured else ""


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, only under /admin, `Secure` whenever over HTTPS.

    It is signed with a key derived from the server secret shared in Redis, so every worker
    and app server accepts the same login without a configured Flask SECRET_KEY. Each login
    is also recorded in Redis for `lifetime` seconds: a cookie whose login was ended (logout,
    a new password) opens no session, even though its signature is still good. A login made
    with REACTIONS_ADMIN_PASSWORD ends when that variable changes.
    """

    def __init__(self, lifetime: int):
        self.lifetime = lifetime

    def open_session(self, app, request):
        if not request.path.startswith("/admin"):
            return None  # the public API has no sessions
        store = app.extensions["reactions"]
        try:
            if not app.secret_key:
                app.secret_key = store.keyed_hash("admin-session")
            session = super().open_session(app, request)
            if session is None or not session.get("admin"):
                return session
            login_open = store.admin_login_open(session.get("login", ""))
            if login_open and session.get("password") == password_tag(app, store):
                return session
        except RedisError:
            return None  # the admin's before_request answers 503
        ended = self.session_class()
        ended.modified = True  # the answer deletes the cookie
        return ended

    def save_session(self, app, session, response) -> None:
        if session.get("admin") and not session.get("login"):
            store = app.extensions["reactions"]
            session["login"] = store.open_admin_login(self.lifetime)
            session["password"] = password_tag(app, store)
        super().save_session(app, session, response)

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or (request and request.is_secure))
