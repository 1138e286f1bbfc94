"""The admin pages: login, sites, per-site and per-article statistics (exports: admin_export;
the reaction-set editor: admin_sets).

A site's named reaction sets are counted apart and shown apart: the site, article and export
views take `?set=NAME` (none: the default set) and show that set's figures only; the
reactions page edits every set.

One rule for every total here and in the exports: a vote counts whatever became of its
reaction, so a retired reaction's votes stay in the totals (shown in their own, marked
column) as they do in the site's total and its ranking of articles. Only the bar on the
pages leaves them out, as it offers the active reactions only.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from . import logs, security
from .embed import embed_html
from .errors import error_response
from .reactions import (
    InvalidField,
    ReactionsError,
    percentages,
    validate_origin,
    validate_set_name,
    validate_site,
)
from .store import SELF_ORIGIN, ArticleStats, Site, current_store, last_days

bp = Blueprint("admin", __name__, url_prefix="/admin")

PAGE_SIZE = 50
SEARCH_LIMIT = 200
TIMELINE_CHOICES = (30, 90)
FAILURE_WINDOW = 15 * 60
MAX_FAILURES = 5
MAX_REACTIONS = 12
SESSION_SECONDS = 12 * 3600
ADMIN_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PUBLIC_ENDPOINTS = {"admin.login"}


@bp.before_request
def require_login():
    if not current_app.secret_key:
        current_store().server_secret()  # Redis is down: a RedisError becomes a 503
    if request.endpoint not in PUBLIC_ENDPOINTS:
        since = session.get("since", 0)
        if not session.get("admin") or time.time() - since > SESSION_SECONDS:
            session.pop("admin", None)
            if request.method == "GET":
                return redirect(url_for("admin.login", next=request.full_path))
            return error_response(401, "login_required", "log in at /admin/login first")
    if request.method == "POST":
        security.check_csrf(request)
    return None


@bp.after_request
def security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = ADMIN_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_template_global()
def csrf_token() -> str:
    return security.csrf_token()


@bp.errorhandler(ReactionsError)
def admin_error(error: ReactionsError):
    if request.path.endswith((".csv", ".json")):
        return error_response(error.status, error.code, error.detail)
    return render_template("admin/error.html", error=error), error.status


# Login -------------------------------------------------------------------------------------


def log_lockout(address: str, wait: int) -> None:
    """A locked-out address that keeps trying: one line per minute, not one per try."""
    lockouts = current_app.extensions.setdefault("reactions_lockouts", logs.Throttle())
    refused = lockouts.passes((address,))
    if refused:
        logs.event(
            "admin.locked_out",
            "admin login refused: too many failures",
            logging.WARNING,
            address=address,
            refused=refused,
            wait=wait,
        )


@bp.route("/login", methods=["GET", "POST"])
def login():
    store = current_store()
    settings = current_app.config
    configured = settings["REACTIONS_ADMIN_PASSWORD"]
    has_password = bool(configured or store.admin_password_hash())
    message = ""
    if request.method == "POST":
        address = security.address_fingerprint(store, request)
        # The global budget spares the server's own machine: an admin there (or through an
        # SSH tunnel) still gets in while many addresses keep everyone else locked out.
        everyone = (
            None if security.is_loopback(request) else settings["REACTIONS_LOGIN_FAILURES_GLOBAL"]
        )
        wait = store.login_lockout(address, MAX_FAILURES, everyone)
        if wait:
            log_lockout(address, wait)
            minutes = math.ceil(wait / 60)
            response = Response(
                render_template(
                    "admin/login.html",
                    has_password=has_password,
                    message=f"Too many failed attempts. Try again in {minutes} "
                    f"minute{'s' if minutes != 1 else ''}.",
                ),
                status=429,
            )
            response.headers["Retry-After"] = str(wait)
            return response
        password = request.form.get("password", "")
        if has_password and security.password_matches(
            password, configured, store.admin_password_hash()
        ):
            store.clear_login_failures(address)
            logs.event("admin.login", "admin logged in", address=address)
            session.clear()
            session.update(admin=True, since=time.time())
            security.csrf_token()
            target = request.args.get("next", "")
            # Only a path on this server: never an open redirect.
            safe = target.startswith("/admin") and not target.startswith("//")
            return redirect(target if safe else url_for("admin.sites"))
        failures = store.count_login_failure(address, FAILURE_WINDOW)
        logs.event(
            "admin.login_failed",
            "wrong admin password",
            logging.WARNING,
            address=address,
            failures=failures,
        )
        # Each failure from the same address waits longer (capped), to slow down guessing.
        delay = settings["REACTIONS_LOGIN_DELAY"]
        time.sleep(min(delay * 2 ** (failures - 1), 2.0))
        message = "Wrong password."
        status = 401
    else:
        status = 200
    return render_template("admin/login.html", has_password=has_password, message=message), status


@bp.post("/logout")
def logout():
    """Ends the login on the server too: a copy of the cookie opens nothing any more."""
    login = session.get("login", "")
    session.clear()
    current_store().end_admin_login(login)
    return redirect(url_for("admin.login"))


# Sites -------------------------------------------------------------------------------------


def admin_site(name: str) -> Site:
    site = current_store().get_site(name)
    if site is None:
        abort(404)
    return site


def admin_set(site: Site) -> tuple[Site, str]:
    """The site as the request's reaction set (`?set=`, none: the default set) is counted, and
    that set's name. An unknown set is not found, as an unknown site is; the exports (which
    answer JSON errors) say why instead."""
    name = request.args.get("set", "")
    try:
        return site.for_set(validate_set_name(name)), name
    except InvalidField:
        if request.path.endswith((".csv", ".json")):
            raise
        abort(404)


def parse_origins(raw: str) -> tuple[str, ...]:
    """Origins one per line; `self` stands for this server's own origin."""
    origins = tuple(
        dict.fromkeys(o if o == SELF_ORIGIN else validate_origin(o) for o in raw.split())
    )
    if not origins:
        raise InvalidField("give at least one origin, such as https://blog.example.com")
    return origins


def embed_snippet(site: Site, set_name: str = "") -> str:
    """With REACTIONS_PUBLIC_URL, the snippet names that address; without it, the address
    this admin page was opened at (behind trusted proxies, the one the browser used). A
    named set's element names its set (set names are letters, digits, - and _)."""
    server = current_app.config["REACTIONS_PUBLIC_URL"] or request.url_root
    snippet = embed_html(server, site.name)
    if set_name:
        snippet = snippet.replace("<emoji-reactions ", f'<emoji-reactions data-set="{set_name}" ')
    return snippet


@bp.get("/")
def sites():
    store = current_store()
    stats = store.site_stats(store.list_sites())
    return render_template("admin/sites.html", stats=stats, snippet=embed_snippet)


@bp.post("/sites")
def add_site():
    store = current_store()
    name = validate_site(request.form.get("name", "").strip())
    if store.is_registered(name):
        raise InvalidField(f"site '{name}' exists already; edit its origins on its page")
    store.save_site(Site(name, parse_origins(request.form.get("origins", ""))))
    return redirect(url_for("admin.site", name=name))


@bp.post("/sites/<name>/origins")
def edit_origins(name: str):
    store = current_store()
    site = admin_site(name)
    store.save_site(replace(site, origins=parse_origins(request.form.get("origins", ""))))
    return redirect(url_for("admin.site", name=name))


@bp.get("/sites/<name>")
def site(name: str):
    """The site's page for one of its reaction sets (`?set=`, the default set without): that
    set's figures only, as each set is counted apart."""
    store = current_store()
    site = admin_site(name)
    counted, set_name = admin_set(site)
    sort = request.args.get("sort", "total")
    if sort != "total" and sort not in {r.id for r in counted.all_reactions}:
        sort = "total"
    days = request.args.get("days", 30, type=int)
    days = days if days in TIMELINE_CHOICES else TIMELINE_CHOICES[0]
    query = request.args.get("q", "").strip()[:100]
    page = max(1, request.args.get("page", 1, type=int))

    (stats,) = store.site_stats([counted])
    total_articles = stats.articles
    pages = max(1, math.ceil(total_articles / PAGE_SIZE))
    if query:
        articles = store.search_articles(counted.name, query, SEARCH_LIMIT)
    else:
        page = min(page, pages)
        articles = store.top_articles(
            counted.name, None if sort == "total" else sort, (page - 1) * PAGE_SIZE, PAGE_SIZE
        )
    day_list = last_days(days)
    timeline = store.site_timeline(counted.name, day_list)
    return render_template(
        "admin/site.html",
        site=site,
        counted=counted,
        set_name=set_name,
        named=site.named_set(set_name),
        stats=stats,
        rows=[article_row(counted, a) for a in articles],
        sort=sort,
        days=days,
        query=query,
        page=page,
        pages=pages,
        total_articles=total_articles,
        chart=timeline_chart(counted, day_list, timeline),
        snippet=embed_snippet(site, set_name),
    )


# Articles ----------------------------------------------------------------------------------


def article_row(site: Site, article: ArticleStats) -> dict:
    """An article's numbers for the pages and exports: a count per reaction of
    `site.all_reactions` (active, then retired), their percentages and total."""
    counts = [article.counts.get(r.id, 0) for r in site.all_reactions]
    return {
        "article": article.article,
        "title": article.title,
        "url": article.url if article.url.startswith(("http://", "https://")) else "",
        "counts": counts,
        "percents": percentages(counts),
        "total": sum(counts),
        "first_seen": article.first_seen,
    }


@bp.get("/sites/<name>/article")
def article(name: str):
    store = current_store()
    site = admin_site(name)
    counted, set_name = admin_set(site)
    article_id = request.args.get("id", "")
    (stats,) = store.article_stats(counted.name, [article_id]) or [None]
    if stats is None or (not stats.counts and stats.first_seen is None):
        abort(404)
    days = request.args.get("days", 30, type=int)
    days = days if days in TIMELINE_CHOICES else TIMELINE_CHOICES[0]
    day_list = last_days(days)
    timeline = store.article_timeline(
        counted.name, article_id, [r.id for r in counted.all_reactions], day_list
    )
    return render_template(
        "admin/article.html",
        site=site,
        counted=counted,
        set_name=set_name,
        named=site.named_set(set_name),
        row=article_row(counted, stats),
        days=days,
        chart=timeline_chart(counted, day_list, timeline),
        reset=request.args.get("reset"),
    )


@bp.post("/sites/<name>/article/reset")
def reset_article(name: str):
    """Resets the article's counts in the set of `?set=` only (the default set without)."""
    site = admin_site(name)
    counted, set_name = admin_set(site)
    article_id = request.form.get("id", "")
    if request.form.get("confirm") != "yes":
        raise InvalidField("tick the box to confirm the reset")
    removed = current_store().reset_article(counted, article_id)
    return redirect(
        url_for("admin.article", name=name, id=article_id, reset=removed, set=set_name or None)
    )


# Charts ------------------------------------------------------------------------------------


def timeline_chart(site: Site, days: list[str], timeline: list[dict[str, int]]) -> dict:
    """Geometry of a stacked daily bar chart, drawn as inline SVG by the template."""
    width, height, left, bottom = 720, 200, 36, 22
    totals = [sum(day.get(r.id, 0) for r in site.all_reactions) for day in timeline]
    peak = max(totals + [1])
    scale = nice_ceiling(peak)
    slot = (width - left) / len(days)
    bars = []
    for index, (day, counts) in enumerate(zip(days, timeline, strict=True)):
        y = height - bottom
        for number, reaction in enumerate(site.all_reactions):
            count = counts.get(reaction.id, 0)
            if not count:
                continue
            h = (height - bottom - 8) * count / scale
            y -= h
            bars.append(
                {
                    "x": round(left + index * slot + slot * 0.15, 2),
                    "y": round(y, 2),
                    "w": round(slot * 0.7, 2),
                    "h": round(h, 2),
                    "series": number % 8,
                    "title": f"{day}: {count} {reaction.label}"
                    + (" (retired)" if reaction in site.retired else ""),
                }
            )
    ticks = [
        {"x": round(left + i * slot + slot / 2, 2), "label": day[5:]}
        for i, day in enumerate(days)
        if i % max(1, len(days) // 6) == 0
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "base": height - bottom,
        "top": 8,
        "scale": scale,
        "bars": bars,
        "ticks": ticks,
        "days": list(zip(days, totals, strict=True)),
        "sum": sum(totals),
        "legend": [(i % 8, r) for i, r in enumerate(site.all_reactions)],
        "retired": site.retired,
    }


def nice_ceiling(value: int) -> int:
    """The y-axis maximum: 1, 2 or 5 times a power of ten, at least `value`."""
    magnitude = 10 ** max(0, len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


@bp.app_template_filter("datetime")
def format_datetime(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    return datetime.fromtimestamp(float(timestamp), UTC).strftime("%Y-%m-%d %H:%M UTC")


def setup(app) -> None:
    app.session_interface = security.AdminSessionInterface(SESSION_SECONDS)
    app.config.update(
        SESSION_COOKIE_NAME="reactions_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/admin",
    )
