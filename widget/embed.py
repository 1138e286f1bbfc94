"""The embeddable script and the demo pages that embed it as a site owner would."""

from __future__ import annotations

import hashlib
import os
from functools import cache

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, NotFound

from . import resource_dir

bp = Blueprint("embed", __name__)

# The minified build of static/js/embed.js (scripts/build_embed.py).
EMBED_PATH = os.path.join(resource_dir("static"), "js", "embed.min.js")
# Short enough that a new release reaches readers soon; versioned URLs are immutable.
EMBED_MAX_AGE = 300
IMMUTABLE_MAX_AGE = 365 * 24 * 3600


def embed_html(server_url: str, site: str) -> str:
    """The two lines a site owner pastes into their pages, for a server reached at
    `server_url` (its public address, with any path prefix)."""
    return (
        f'<script src="{server_url.rstrip("/")}/embed.js" data-site="{site}" async></script>\n'
        '<emoji-reactions data-article="ARTICLE-ID"></emoji-reactions>'
    )


@cache
def embed_script() -> tuple[bytes, str]:
    """The script's bytes and a content version, read once per process."""
    with open(EMBED_PATH, "rb") as handle:
        data = handle.read()
    return data, hashlib.sha256(data).hexdigest()[:12]


def script_response(max_age: int, immutable: bool = False) -> Response:
    data, version = embed_script()
    response = Response(data, mimetype="text/javascript")
    response.headers["Cache-Control"] = f"public, max-age={max_age}" + (
        ", immutable" if immutable else ""
    )
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(version)
    return response.make_conditional(request)


@bp.get("/embed.js")
def embed_js():
    return script_response(EMBED_MAX_AGE)


@bp.get("/embed.<version>.js")
def embed_versioned(version: str):
    _, current = embed_script()
    if version != current:
        # An old or unknown version: send the reader to what is current.
        return redirect(url_for("embed.embed_js"), code=302)
    return script_response(IMMUTABLE_MAX_AGE, immutable=True)


DEMO_ARTICLES = {
    "slow-mornings": {
        "title": "The case for slow mornings",
        "minutes": 4,
        "date": "12 November 2026",
    },
    "tiny-gardens": {
        "title": "What a balcony garden taught me about patience",
        "minutes": 6,
        "date": "3 November 2026",
    },
    "night-trains": {
        "title": "Night trains are back, and they are wonderful",
        "minutes": 5,
        "date": "28 October 2026",
    },
}


# The demo pages run under the strict policy a careful host page would set, so they prove
# the widget needs no inline script or style and talks only to its own server.
DEMO_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.after_request
def demo_headers(response: Response) -> Response:
    if request.path.startswith("/demo"):
        response.headers["Content-Security-Policy"] = DEMO_CSP
        response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    return response


@bp.before_app_request
def drop_trailing_slash():
    """`/demo/`, `/demo/blog/`, `/admin/login/`: a GET for a page that exists without the
    trailing slash is sent there (308) rather than answered 404."""
    missing = isinstance(request.routing_exception, NotFound)
    if not missing or request.method not in ("GET", "HEAD"):
        return None
    path = request.path.rstrip("/")
    if not path or path == request.path:
        return None
    try:
        current_app.create_url_adapter(request).match(path, method=request.method)
    except HTTPException:  # not there either (or only with its slash)
        return None
    query = request.query_string.decode("latin-1")
    return redirect(request.script_root + path + (f"?{query}" if query else ""), code=308)


@bp.get("/")
def index():
    return redirect(url_for("embed.demo"))


@bp.get("/demo")
def demo():
    return demo_article("slow-mornings")


@bp.get("/demo/<slug>")
def demo_article(slug: str):
    if slug not in DEMO_ARTICLES:
        abort(404)
    return render_template("demo.html", slug=slug, article=DEMO_ARTICLES[slug])


@bp.get("/demo/thumbs")
def demo_thumbs():
    """An article with two bars, as the seed's page had: the compact like/dislike pair (the
    set `thumbs`) above it, the six emotions below, counted apart and read in one batch."""
    return render_template(
        "demo.html", slug="slow-mornings", article=DEMO_ARTICLES["slow-mornings"], pair=True
    )


@bp.get("/demo/blog")
def demo_blog():
    """An index page with one bar per article: several bars batched into one request."""
    return render_template("demo_blog.html", articles=DEMO_ARTICLES)
