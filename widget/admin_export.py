"""The admin's exports: every article's counts, or the daily series, as CSV or JSON, streamed
(routes of the admin blueprint, behind its login).

The same rule as the admin pages: a retired reaction's votes stay in the totals, in their
own column (CSV) or marked `"retired": true` (JSON).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

from flask import Response, request, stream_with_context

from .admin import admin_site, article_row, bp
from .store import Site, current_store, last_days

EXPORT_DAY_CHOICES = (30, 90, 365)


def export_name(site: Site, extension: str) -> str:
    return f"reactions-{site.name}-{datetime.now(UTC):%Y-%m-%d}.{extension}"


# A formula's first character, at the start of a cell or of any piece a spreadsheet may
# split the cell into (at a comma, semicolon, tab or line break, whatever its separator),
# perhaps after spaces: a `'` goes before it, so the piece is read as text (OWASP's advice
# on CSV injection).
FORMULA_START = re.compile(r"(^|[,;\t\r\n])( *)(?=[=+\-@\t\r])")


def spreadsheet_safe(value: str) -> str:
    """Text that a spreadsheet will not run as a formula (CSV injection), however it splits
    it: `a;=1+1` becomes `a;'=1+1`."""
    return FORMULA_START.sub(r"\1\2'", value)


@bp.get("/sites/<name>/export.csv")
def export_csv(name: str):
    site = admin_site(name)
    store = current_store()
    daily = request.args.get("series") == "daily"

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        # Every text cell quoted, so that no separator inside one splits it.
        writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC)

        def line(values) -> str:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([spreadsheet_safe(v) if isinstance(v, str) else v for v in values])
            return buffer.getvalue()

        ids = [r.id for r in site.all_reactions]
        if daily:
            wanted = request.args.get("days", 90, type=int)
            days = last_days(wanted if wanted in EXPORT_DAY_CHOICES else 90)
            yield line(["day", *ids, "total"])
            for day, counts in zip(days, store.site_timeline(site.name, days), strict=True):
                values = [counts.get(r, 0) for r in ids]
                yield line([day, *values, sum(values)])
            return
        yield line(["article", "title", "url", *ids, "total"])
        for stats in store.iter_articles(site.name):
            row = article_row(site, stats)
            yield line(
                [
                    row["article"],
                    row["title"],
                    stats.url,
                    *row["counts"],
                    row["total"],
                ]
            )

    suffix = "-daily" if daily else ""
    response = Response(stream_with_context(rows()), mimetype="text/csv")
    filename = export_name(site, "csv").replace(".csv", f"{suffix}.csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/sites/<name>/export.json")
def export_json(name: str):
    site = admin_site(name)
    store = current_store()

    def chunks() -> Iterator[str]:
        head = {
            "site": site.name,
            "exported": datetime.now(UTC).isoformat(timespec="seconds"),
            "reactions": [r.as_dict() | {"retired": r in site.retired} for r in site.all_reactions],
        }
        # The object is streamed: its head, then one article at a time, then the series.
        yield json.dumps(head, ensure_ascii=False)[:-1] + ', "articles": ['
        first = True
        for stats in store.iter_articles(site.name):
            row = article_row(site, stats)
            body = {
                "article": row["article"],
                "title": row["title"],
                "url": stats.url,
                "total": row["total"],
                "counts": dict(zip([r.id for r in site.all_reactions], row["counts"], strict=True)),
            }
            yield ("" if first else ", ") + json.dumps(body, ensure_ascii=False)
            first = False
        days = last_days(90)
        daily = [
            {"day": day, "counts": {r.id: counts.get(r.id, 0) for r in site.all_reactions}}
            for day, counts in zip(days, store.site_timeline(site.name, days), strict=True)
        ]
        yield '], "daily": ' + json.dumps(daily) + "}"

    response = Response(stream_with_context(chunks()), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{export_name(site, "json")}"'
    return response
