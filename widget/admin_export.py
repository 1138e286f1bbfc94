"""The admin's exports: every article's counts, or the daily series, as CSV or JSON, streamed
(routes of the admin blueprint, behind its login).

The same rule as the admin pages: a retired reaction's votes stay in the totals, in their
own column (CSV) or marked `"retired": true` (JSON).

A site's reaction sets are exported apart, one file per set (`?set=`, as `reactions export
--set`), since each has its own reactions and so its own columns; a named set's file says
its set (a `set` column, a `"set"` field), and the default set's is as it always was. One
file of every set would be mostly empty columns: the article id joins the files instead.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

from flask import Response, request, stream_with_context

from .admin import admin_set, admin_site, article_row, bp
from .store import Site, Store, current_store, last_days

EXPORT_DAY_CHOICES = (30, 90, 365)


def export_name(site: Site, set_name: str, extension: str, suffix: str = "") -> str:
    named = f"-{set_name}" if set_name else ""
    return f"reactions-{site.name}{named}-{datetime.now(UTC):%Y-%m-%d}{suffix}.{extension}"


# A formula's first character, at the start of a cell or of any piece a spreadsheet may
# split the cell into (at a comma, semicolon, tab or line break, whatever its separator),
# perhaps after spaces: a `'` goes before it, so the piece is read as text (OWASP's advice
# on CSV injection).
FORMULA_START = re.compile(r"(^|[,;\t\r\n])( *)(?=[=+\-@\t\r])")


def spreadsheet_safe(value: str) -> str:
    """Text that a spreadsheet will not run as a formula (CSV injection), however it splits
    it: `a;=1+1` becomes `a;'=1+1`."""
    return FORMULA_START.sub(r"\1\2'", value)


def csv_lines(
    store: Store, site: Site, set_name: str = "", days: list[str] | None = None
) -> Iterator[str]:
    """The CSV of one reaction set of the site ("" the default set), line by line: every
    article's counts, or with `days` the daily series. A named set's lines start with a `set`
    column, so that the file says which set it holds; the default set's have none."""
    counted = site.for_set(set_name)
    lead = [set_name] if set_name else []
    buffer = io.StringIO()
    # Every text cell quoted, so that no separator inside one splits it.
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC)

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([spreadsheet_safe(v) if isinstance(v, str) else v for v in values])
        return buffer.getvalue()

    ids = [r.id for r in counted.all_reactions]
    heading = ["set"] if set_name else []
    if days is not None:
        yield line([*heading, "day", *ids, "total"])
        for day, counts in zip(days, store.site_timeline(counted.name, days), strict=True):
            values = [counts.get(r, 0) for r in ids]
            yield line([*lead, day, *values, sum(values)])
        return
    yield line([*heading, "article", "title", "url", *ids, "total"])
    for stats in store.iter_articles(counted.name):
        row = article_row(counted, stats)
        yield line([*lead, row["article"], row["title"], stats.url, *row["counts"], row["total"]])


def json_chunks(store: Store, site: Site, set_name: str = "") -> Iterator[str]:
    """The JSON of one reaction set of the site ("" the default set), streamed: its head, one
    article at a time, then the daily series of 90 days. A named set's head names the set
    and its style."""
    counted = site.for_set(set_name)
    named = site.named_set(set_name)
    head = {"site": site.name}
    if named is not None:
        head |= {"set": named.name, "style": named.style}
    head |= {
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "reactions": [
            r.as_dict() | {"retired": r in counted.retired} for r in counted.all_reactions
        ],
    }
    ids = [r.id for r in counted.all_reactions]
    yield json.dumps(head, ensure_ascii=False)[:-1] + ', "articles": ['
    first = True
    for stats in store.iter_articles(counted.name):
        row = article_row(counted, stats)
        body = {
            "article": row["article"],
            "title": row["title"],
            "url": stats.url,
            "total": row["total"],
            "counts": dict(zip(ids, row["counts"], strict=True)),
        }
        yield ("" if first else ", ") + json.dumps(body, ensure_ascii=False)
        first = False
    days = last_days(90)
    daily = [
        {"day": day, "counts": {r: counts.get(r, 0) for r in ids}}
        for day, counts in zip(days, store.site_timeline(counted.name, days), strict=True)
    ]
    yield '], "daily": ' + json.dumps(daily) + "}"


@bp.get("/sites/<name>/export.csv")
def export_csv(name: str):
    """Every article's counts (or `?series=daily`) of the reaction set `?set=` (the default
    set without); an unknown set is a 400 with a JSON reason."""
    site = admin_site(name)
    _, set_name = admin_set(site)
    days = None
    if request.args.get("series") == "daily":
        wanted = request.args.get("days", 90, type=int)
        days = last_days(wanted if wanted in EXPORT_DAY_CHOICES else 90)
    lines = csv_lines(current_store(), site, set_name, days)
    response = Response(stream_with_context(lines), mimetype="text/csv")
    filename = export_name(site, set_name, "csv", "-daily" if days is not None else "")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/sites/<name>/export.json")
def export_json(name: str):
    site = admin_site(name)
    _, set_name = admin_set(site)
    chunks = json_chunks(current_store(), site, set_name)
    response = Response(stream_with_context(chunks), mimetype="application/json")
    filename = export_name(site, set_name, "json")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
