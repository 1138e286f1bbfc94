"""The public JSON API the widget talks to: read counts, set a reaction, health."""

from __future__ import annotations

import functools
import json

from flask import Blueprint, Request, Response, after_this_request, current_app, jsonify, request
from flask_cors import cross_origin
from redis import RedisError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import generate_etag, quote_etag

from . import metrics, openapi, security, svg
from .reactions import (
    MAX_BATCH_ARTICLES,
    InvalidField,
    OriginNotAllowed,
    Reaction,
    UnknownSite,
    normalize_article,
    parse_vote,
    percentages,
    validate_reader,
    validate_set_name,
    validate_site,
)
from .store import Site, Store, current_store, scope, split_scope

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Browsers revalidate every time (a cheap 304), so a reload after a vote never shows older
# numbers; a CDN (RFC 9213 CDN-Cache-Control) may serve counts up to 5 s old in a burst.
READ_CACHE_CONTROL = "public, no-cache"
CDN_CACHE_CONTROL = "public, max-age=5"
health = Blueprint("health", __name__)


def known_site(name: object, store: Store | None = None) -> Site:
    site = (current_store() if store is None else store).get_site(validate_site(name))
    if site is None:
        raise UnknownSite(f"site '{name}' is not registered on this server")
    return site


def reaction_set(site: Site, name: object) -> tuple[Site, bytes]:
    """The site as its reaction set `name` is counted (None or "": the default set, the site
    itself), and the members a named set's bodies end with, `,"set":…,"style":…` (none for
    the default set, whose bodies stay as they were). A set the site lacks is a 400."""
    if name is None or name == "":
        return site, b""
    counted = site.for_set(validate_set_name(name))
    return counted, set_members(name, site.named_set(name).style)


@functools.lru_cache(maxsize=256)
def set_members(name: str, style: str) -> bytes:
    return b',"set":%s,"style":%s' % (encode(name), encode(style))


def encode(body: object) -> bytes:
    """Compact JSON with non-ASCII characters escaped, as ASCII bytes.

    Escaped because an emoji would make Python build a 4-byte-per-character string first,
    which made encoding about twice as slow; the few extra bytes vanish once gzipped. One
    shared encoder, because json.dumps builds a new one whenever an option differs from its
    defaults (measured: see docs/benchmarks.md, "JSON encoding")."""
    return _COMPACT_JSON.encode(body).encode("ascii")


_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
_JSON_DECODER = json.JSONDecoder()


def encode_summary(
    site: str,
    article: str,
    reactions: tuple[Reaction, ...],
    counts: dict[str, int],
    extra: bytes = b"",
) -> bytes:
    """The public body of one article, byte for byte as encode() would write it: site,
    article, total, and each reaction in the site's order with its count and percentage.

    Filled into a template made once per reaction set, with ids, emoji and labels already
    encoded, because encoding a fresh dict on every vote was the slower part of its answer.
    `extra` is more members (`,"name":value…`) for the end of the object."""
    ids, template = _summary_template(reactions)
    ordered = [counts.get(i, 0) for i in ids]
    if min(ordered, default=0) < 0:
        ordered = [max(0, count) for count in ordered]
    values = [encode(site), encode(article), sum(ordered)]
    for count_and_percent in zip(ordered, percentages(ordered), strict=True):
        values += count_and_percent
    values.append(extra)
    return template % tuple(values)


@functools.lru_cache(maxsize=256)
def _summary_template(reactions: tuple[Reaction, ...]) -> tuple[tuple[str, ...], bytes]:
    """The reaction ids, and the body with `%s`/`%d` for site, article, total, each count and
    percentage, and the extra members; a `%` in an emoji or label is escaped."""
    members = [
        encode({"id": r.id, "emoji": r.emoji, "label": r.label})[:-1].replace(b"%", b"%%")
        + b',"count":%d,"percent":%d}'
        for r in reactions
    ]
    body = b'{"site":%s,"article":%s,"total":%d,"reactions":[' + b",".join(members) + b"]%s}"
    return tuple(r.id for r in reactions), body


def conditional_read(data: bytes, etag: str) -> Response:
    """Public reads: the ETag makes a repeat read a cheap 304. Each route says who may read.

    Only If-None-Match is honoured: werkzeug's make_conditional also handles byte ranges and
    dates, which no reader of a small JSON body needs and which cost every read a noticeable
    share of its time (gunicorn adds the Date header).
    """
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304)
    else:
        response = Response(data, content_type="application/json")
    # Appended: a new response has none of these, and setting a header first looks for it.
    headers = response.headers
    headers.add("ETag", quote_etag(etag))
    headers.add("Cache-Control", READ_CACHE_CONTROL)
    headers.add("CDN-Cache-Control", CDN_CACHE_CONTROL)
    return response


def encoded_counts(
    site: str,
    article: str,
    reactions: tuple[Reaction, ...],
    counts: dict[str, int],
    extra: bytes = b"",
) -> tuple[bytes, str]:
    """An article's read body and its ETag, encoded once per change of its counts: a busy
    article is read far more often than it changes. `extra`: a named set's members
    (`set_members`)."""
    return _encoded_counts(site, article, reactions, frozenset(counts.items()), extra)


@functools.lru_cache(maxsize=4096)
def _encoded_counts(
    site: str, article: str, reactions: tuple[Reaction, ...], counts: frozenset, extra: bytes
) -> tuple[bytes, str]:
    data = encode_summary(site, article, reactions, dict(counts), extra)
    return data, generate_etag(data)


def live_counts(site: str, articles: list[str]) -> list[dict[str, int]]:
    return current_app.extensions["reactions_live"].counts_many(site, articles)


@bp.get("/reactions", provide_automatic_options=False)
def get_reactions():
    args = request.args
    site = known_site(args.get("site"))
    counted, extra = reaction_set(site, args.get("set"))
    article = normalize_article(args.get("article"))
    (counts,) = live_counts(counted.name, [article])
    response = conditional_read(
        *encoded_counts(site.name, article, counted.reactions, counts, extra)
    )
    # Any origin may read. Set here rather than by flask-cors as for the batch, because its
    # decorator made this, the most frequent request, about a third dearer (measured: see
    # docs/benchmarks.md, "CORS header on counts reads").
    response.headers.add("Access-Control-Allow-Origin", "*")
    return response


# An SVG opened on its own must not run or fetch anything; its styles are attributes.
IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'"


@bp.get("/reactions.svg")
def get_reactions_image():
    """The counts as an image, for readers without JavaScript: the JSON GET's figures, its
    ETag and caching rules; errors stay JSON."""
    site = known_site(request.args.get("site"))
    counted, extra = reaction_set(site, request.args.get("set"))
    article = normalize_article(request.args.get("article"))
    theme = request.args.get("theme", "light")
    if theme not in svg.THEMES:
        raise InvalidField(f"'theme' must be one of {', '.join(svg.THEMES)}")
    (counts,) = live_counts(counted.name, [article])
    summary, _ = encoded_counts(site.name, article, counted.reactions, counts, extra)
    response = conditional_read(*encoded_image(summary, theme))
    headers = response.headers
    if response.status_code == 200:
        headers["Content-Type"] = "image/svg+xml"
    headers.add("Access-Control-Allow-Origin", "*")
    headers.add("X-Content-Type-Options", "nosniff")
    headers.add("Content-Security-Policy", IMAGE_CSP)
    return response


@functools.lru_cache(maxsize=512)
def encoded_image(summary: bytes, theme: str) -> tuple[bytes, str]:
    """The image of an article's read body and its ETag, drawn once per change of its counts
    (and theme), from the very body the JSON GET answers."""
    data = svg.render(_JSON_DECODER.decode(summary.decode("ascii")), theme).encode()
    return data, generate_etag(data)


@bp.get("/reactions/batch")
# `*` whatever the Origin: flask-cors' default echoes the page's origin, and with the header
# this view once set as well, a cross-origin page got two values, which browsers refuse.
@cross_origin(origins="*", send_wildcard=True, max_age=security.PREFLIGHT_MAX_AGE)
def get_reactions_batch():
    """Every bar of a page in one read, whatever their sets: `article` (repeated) for the
    default set's articles, `set_article=SET:ARTICLE` (repeated) for a named set's; a set's
    name has no ":", so the first one ends it and the article id may hold any character."""
    args = request.args
    site = known_site(args.get("site"))
    asked = args.getlist("article")
    in_sets = args.getlist("set_article")
    if not asked and not in_sets:
        raise InvalidField("give at least one 'article' or 'set_article' parameter")
    # Counted as given, repeats too, as the API's schema says (maxItems).
    if len(asked) + len(in_sets) > MAX_BATCH_ARTICLES:
        raise InvalidField(f"at most {MAX_BATCH_ARTICLES} articles per batch")
    by_set: dict[str, list[str]] = {}
    for item in dict.fromkeys(in_sets):
        name, colon, article = item.partition(":")
        if not colon or not name:
            raise InvalidField("'set_article' must be a set's name, ':' and an article id")
        by_set.setdefault(name, []).append(article)
    counted = {name: reaction_set(site, name) for name in by_set}  # 400s before any read
    # {"articles": {asked: summary, …}, "sets": {set: {asked: summary, …}, …}}, byte for byte
    # as encode() writes it ("sets" only when asked), joined from each article's cached body.
    data = b'{"articles":{' + batch_members(site, site, b"", asked) + b"}"
    if by_set:
        sets = [
            encode(name) + b":{" + batch_members(site, *counted[name], articles) + b"}"
            for name, articles in by_set.items()
        ]
        data += b',"sets":{' + b",".join(sets) + b"}"
    data += b"}"
    return conditional_read(data, generate_etag(data))


def batch_members(site: Site, counted: Site, extra: bytes, asked: list[str]) -> bytes:
    """`"asked":summary,…` of these articles of one reaction set, read in one round trip,
    each from its cached body rather than summarized and encoded again."""
    requested = list(dict.fromkeys(asked))
    articles = [normalize_article(a) for a in requested]
    all_counts = live_counts(counted.name, articles) if articles else []
    reactions = counted.reactions
    return b",".join(
        encode(asked) + b":" + encoded_counts(site.name, article, reactions, counts, extra)[0]
        for asked, article, counts in zip(requested, articles, all_counts, strict=True)
    )


@bp.route("/reactions", methods=["OPTIONS"])
def preflight_reactions():
    return security.preflight(request)


@bp.post("/reactions", provide_automatic_options=False)
def post_reaction():
    # The request and the app are looked up once: each use of Flask's context proxies
    # (request, current_app) looks up the context again, and a vote used them a dozen times.
    req, app = request._get_current_object(), current_app._get_current_object()
    store: Store = app.extensions["reactions"]
    security.require_json(req)
    data = parse_json_object(req, app.config["MAX_CONTENT_LENGTH"])
    site = known_site(data.get("site"), store)
    # The exact origin on the answer, and on errors after this check too, so the page can
    # read what went wrong; a refused origin too, so its bar can say why: the refusal exposes
    # nothing and writes nothing. A hook of this request only: a blueprint-wide
    # after_request hook would run on every read too.
    origin = security.readable_origin(req)
    if origin:
        after_this_request(functools.partial(security.allow_write_origin, origin=origin))
    page = security.require_allowed_origin(req, site)
    counted, members = reaction_set(site, data.get("set"))
    vote = parse_vote(data, counted.reactions)
    article, choice, title = vote.article, vote.choice, vote.title
    url = security.allowed_page_url(req, site, vote.url)
    if url is None:  # a page on an origin the site does not allow: counted, not described
        url = title = ""

    if security.is_automated(req):
        # Answered like a vote, so a crawler sees nothing unusual, but not counted.
        with metrics.REDIS_COUNTS_SECONDS.time():
            counts = store.counts(counted.name, article)
        metrics.VOTES_NOT_COUNTED.inc()
        extra = members + b',"mine":null,"counted":false'
    else:
        # The reader is the site's whatever the set: one hash lists its reactions in all.
        reader = store.reader_hash(site.name, vote.reader)
        client = security.client_fingerprint(store, req)
        address = security.address_fingerprint(store, req)
        with metrics.REDIS_VOTE_SECONDS.time():
            _, counts = store.set_reaction(
                counted, article, reader, choice, url, title,
                client=client, origin=page, address=address,
            )  # fmt: skip
        metrics.VOTES_COUNTED.inc()
        extra = members + b',"mine":%s,"counted":true' % encode(choice)
    data = encode_summary(site.name, article, counted.reactions, counts, extra)
    response = Response(data, content_type="application/json")
    response.headers.add("Cache-Control", "no-store")  # a new response has none
    return response


# The reader's token for /me: a header, so it is never written to a URL, a log or a history.
READER_TOKEN_HEADER = "X-Reader-Token"


@bp.route("/me", methods=["OPTIONS"])
def preflight_me():
    return security.preflight(request, "GET, DELETE", f"Content-Type, {READER_TOKEN_HEADER}")


@bp.route("/me", methods=["GET", "DELETE"], provide_automatic_options=False)
def readers_own_reactions():
    """A reader's own reactions on a site, in every reaction set of it (or only `set`): GET
    lists them, DELETE takes them all back (or only `article`'s, in `set` or the default
    set) and answers what it took back. Only from the site's allowed origins, like a vote,
    and the token only in its header."""
    req = request._get_current_object()
    store = current_store()
    site = known_site(req.args.get("site"))
    origin = security.readable_origin(req)
    if origin:
        after_this_request(functools.partial(security.allow_write_origin, origin=origin))
    token = req.headers.get(READER_TOKEN_HEADER)
    if {"reader", "token"} & req.args.keys() or (token and token in req.query_string.decode()):
        raise InvalidField(
            f"send the reader token in the {READER_TOKEN_HEADER} header, never in the URL"
        )
    if not req.headers.get("Origin") and req.headers.get("Sec-Fetch-Site") == "same-origin":
        # A browser sends no Origin with a GET to its page's own origin (the demo page);
        # Sec-Fetch-Site, which no script can set, says that is where it comes from.
        own = f"{req.scheme}://{req.host}"
        if not site.allows(own, security.own_origin(req, site, own)):
            raise OriginNotAllowed(f"this server's own pages may not read site '{site.name}'")
    else:
        security.require_allowed_origin(req, site)
    if token is None:
        raise InvalidField(f"send the reader token in the {READER_TOKEN_HEADER} header")
    reader = store.reader_hash(site.name, validate_reader(token))
    erase = req.method == "DELETE"
    only = normalize_article(req.args["article"]) if erase and "article" in req.args else ""
    # Every set of the site, or the one asked for; one article is taken back from one set
    # (`set`, else the default set).
    if "set" in req.args or only:
        sets: tuple[str, ...] = (reaction_set(site, req.args.get("set", ""))[0].name,)
    else:
        sets = (site.name, *(scope(site.name, s.name) for s in site.sets))
    found = store.own_reactions_in_sets(
        sets, reader, erase, only, address=security.address_fingerprint(store, req)
    )
    response = jsonify(
        site=site.name,
        reactions=[{**r.as_dict(), "set": split_scope(name)[1]} for name, r in found],
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def parse_json_object(req: Request, limit: int | None) -> dict:
    raw = read_body(req, limit)
    try:
        # JSON between systems is UTF-8 (RFC 8259), so decode it as such: json.loads would
        # first guess among UTF-8, 16 and 32 in Python, a third of the parsing work.
        data = _JSON_DECODER.decode(raw.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        raise InvalidField("the body is not valid JSON") from None
    except RecursionError:
        # Under the size cap, 968 nested arrays exhaust Python's stack; a vote is one level.
        raise InvalidField("the body is nested too deeply: a vote is one flat object") from None
    if not isinstance(data, dict):
        raise InvalidField("the body must be a JSON object")
    return data


def read_body(req: Request, limit: int | None) -> bytes:
    """The request body, at most `limit` bytes (MAX_CONTENT_LENGTH), else 413.

    Straight from the WSGI input, which the server ends at the declared length or, for a
    chunked upload, at its last chunk (`wsgi.input_terminated`, as gunicorn does): werkzeug's
    get_data does more work for the same bytes, and it cut a chunked upload off at the
    limit, which then failed as invalid JSON instead of a 413.
    """
    environ, length = req.environ, req.content_length
    if length is not None:
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        return environ["wsgi.input"].read(length)
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length and no end: nothing is safe to read (werkzeug does the same)
    raw = environ["wsgi.input"].read() if limit is None else environ["wsgi.input"].read(limit + 1)
    if limit is not None and len(raw) > limit:
        raise RequestEntityTooLarge()
    return raw


@health.get("/openapi.json")
def openapi_json():
    response = jsonify(openapi.document())
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@health.get("/healthz")
def healthz():
    """200 while this process answers, which is all a liveness check should restart it for;
    `redis` says whether its store answers too (/readyz answers 503 when it does not)."""
    try:
        redis_state = "ok" if current_store().ping() else "unreachable"
    except RedisError:
        redis_state = "unreachable"
    return {"status": "ok", "redis": redis_state}


@health.get("/readyz")
def readyz():
    current_store().ping()  # a RedisError becomes a 503 in errors.py
    return {"status": "ready"}
