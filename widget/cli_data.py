"""`reactions export`, `import`, `backup` and `restore`: the data in and out of the store."""

from __future__ import annotations

import os
from dataclasses import replace

import click

from . import backup, logs
from .admin_export import EXPORT_DAY_CHOICES, csv_lines, json_chunks
from .cli_common import open_store, settings
from .reactions import (
    THUMBS_REACTIONS,
    ReactionsError,
)
from .store import NamedSet, Site, Store, last_days
from .wordpress import CONTENT_TYPES, THUMBS_SET, WORDPRESS_TYPES, read_export


@click.command("export")
@click.argument("site_name", metavar="SITE")
@click.option(
    "--set", "set_name", default="", metavar="NAME",
    help="The site's named reaction set to export (default: the default set).",
)  # fmt: skip
@click.option(
    "--format", "form", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--daily", type=click.Choice([str(d) for d in EXPORT_DAY_CHOICES]), metavar="DAYS",
    help="The daily series of the last DAYS days (30, 90 or 365) instead of the articles "
    "(CSV only).",
)  # fmt: skip
@click.option(
    "--output", "-o", type=click.File("w", encoding="utf-8", lazy=True), default="-",
    help="Write to this file instead of the standard output.",
)  # fmt: skip
def export_command(site_name: str, set_name: str, form: str, daily: str | None, output) -> None:
    """Write every article's counts of site SITE as CSV or JSON, as the admin's export does.

    A site's reaction sets are exported apart: --set NAME exports that named set, whose
    file says its set (a first column "set", a "set" field in JSON).
    """
    if daily and form != "csv":
        raise click.BadParameter("the daily series is a CSV export", param_hint="--daily")
    with open_store() as store:
        site = store.get_site(site_name)
        if site is None:
            raise click.ClickException(f"no site '{site_name}': add it with 'reactions sites add'")
        if set_name and site.named_set(set_name) is None:
            known = ", ".join(s.name for s in site.sets) or "none"
            raise click.ClickException(
                f"site '{site_name}' has no reaction set '{set_name}' (its named sets: {known})"
            )
        if form == "json":
            chunks = json_chunks(store, site, set_name)
        else:
            chunks = csv_lines(store, site, set_name, last_days(int(daily)) if daily else None)
        for chunk in chunks:
            output.write(chunk)
        if form == "json":
            output.write("\n")


@click.group("import")
def import_group() -> None:
    """Bring in reaction counts from other systems."""


@import_group.command("wordpress")
@click.argument("export", type=click.Path(exists=True, dir_okay=False))
@click.option("--site", "site_name", required=True, help="The registered site to import into.")
@click.option("--dry-run", is_flag=True, help="Print what would be imported, change nothing.")
@click.option(
    "--include-private",
    is_flag=True,
    help="Also import private posts (only logged-in editors see them and their bar).",
)
@click.option(
    "--post-type",
    "post_types",
    multiple=True,
    metavar="TYPE",
    help="Also import this custom post type (e.g. product); repeat for more.",
)
def import_wordpress(
    export: str, site_name: str, dry_run: bool, include_private: bool, post_types: tuple[str, ...]
) -> None:
    """Import Booster Extension reaction counts from a WordPress export (WXR) file.

    Each published post's and page's counts (post meta twp_be_react_1 to _6) become the
    starting counts of its article, keyed by its permalink as the widget keys the page
    (plain permalinks like ?p=123 included). Its like/dislike counts (twp_be_like_count,
    twp_be_dislike_like_count) go to the site's reaction set 'thumbs', created with like and
    dislike, shown as counts, if the site has none. Drafts, scheduled, private and trashed
    posts, attachments and menu items are skipped and counted. Importing the same file
    again changes nothing; a newer export adds only what changed since.
    """
    for post_type in post_types:
        if post_type in CONTENT_TYPES or post_type in WORDPRESS_TYPES:
            raise click.BadParameter(
                f"'{post_type}' is not a custom post type", param_hint="--post-type"
            )
    try:
        wordpress = read_export(export, include_private, post_types)
    except ReactionsError as error:
        raise click.ClickException(error.detail) from None
    with open_store() as store:
        site = store.get_site(site_name)
        if site is None:
            raise click.ClickException(f"no site '{site_name}': add it with 'reactions sites add'")
        with_thumbs = [post for post in wordpress.posts if post.thumbs]
        thumbs = thumbs_set(store, site, dry_run) if with_thumbs else None
        verb = "would import" if dry_run else "imported"
        change = thumbs_change = 0
        for post in wordpress.posts:
            for warning in post.warnings:
                click.echo(f"warning: {post.url}: {warning}", err=True)
            # A post with like/dislike counts only has no article in the default set.
            if post.counts or not post.thumbs:
                counts = known_counts(site, post.url, post.counts, "the site")
                if not dry_run:
                    change += store.import_counts(site, post.article, counts, post.url, post.title)
                shown = ", ".join(f"{r} {n}" for r, n in counts.items()) or "no counts"
                click.echo(f"{verb} {post.article} ({post.title or 'untitled'}): {shown}")
            if post.thumbs and thumbs is not None:
                counts = known_counts(thumbs, post.url, post.thumbs, f"the set '{THUMBS_SET}'")
                if not dry_run:
                    thumbs_change += store.import_counts(
                        thumbs, post.article, counts, post.url, post.title
                    )
                shown = ", ".join(f"{r} {n}" for r, n in counts.items()) or "no counts"
                click.echo(
                    f"{verb} {post.article} ({post.title or 'untitled'}) into the set "
                    f"'{THUMBS_SET}': {shown}"
                )
    for line in wordpress.summary():
        click.echo(line)
    if not dry_run:
        click.echo(f"Counts changed by {change:+d} (0 when this file was imported before).")
        if with_thumbs:
            click.echo(
                f"Like/dislike counts of the set '{THUMBS_SET}' changed by {thumbs_change:+d}."
            )
    logs.event(
        "import.wordpress",
        "WordPress counts checked (dry run)" if dry_run else "WordPress counts imported",
        site=site_name,
        posts=len(wordpress.posts),
        change=change,
        thumbs_change=thumbs_change,
        dry_run=dry_run,
    )


def thumbs_set(store: Store, site: Site, dry_run: bool) -> Site:
    """The site as its set 'thumbs' is counted, for the like/dislike counts: created (like
    and dislike, shown as counts) when the site has no such set, and said so."""
    if site.named_set(THUMBS_SET) is None:
        site = replace(site, sets=(*site.sets, NamedSet(THUMBS_SET, THUMBS_REACTIONS, "count")))
        if not dry_run:
            site = store.save_site(site)
        click.echo(
            f"{'Would create' if dry_run else 'Created'} the reaction set '{THUMBS_SET}' of "
            f"site '{site.name}' for the like/dislike counts: "
            + ", ".join(f"{r.emoji} {r.label}" for r in THUMBS_REACTIONS)
            + f', shown as counts. Embed it with <emoji-reactions data-set="{THUMBS_SET}">.'
        )
    return site.for_set(THUMBS_SET)


def known_counts(site: Site, url: str, counts: dict[str, int], where: str) -> dict[str, int]:
    """The counts of the reactions `site` (a site or one of its sets) has; a warning names
    the others, which are left out."""
    known = {r.id for r in site.all_reactions}
    unknown = sorted(set(counts) - known)
    if unknown:
        click.echo(
            f"warning: {url}: {where} has no reaction {', '.join(unknown)}: "
            "those counts are left out",
            err=True,
        )
    return {r: n for r, n in counts.items() if r in known}


@click.command("backup")
@click.argument("path", type=click.Path(file_okay=True, dir_okay=True, writable=True))
def backup_command(path: str) -> None:
    """Write a consistent copy of all data to PATH (a new file named with the time when PATH
    is a directory), also while the server serves.

    Redis writes a snapshot of its data (BGSAVE, an RDB file, in the background); the copy
    reaches PATH whole or not at all. Bring it back with 'reactions restore'. It copies the
    embedded Redis of REACTIONS_DATA_DIR, or a REDIS_URL Redis on this machine whose files
    it can read; another Redis's backups are its operator's.
    """
    conf = settings()
    url = conf["REDIS_URL"]
    if url and not backup.is_local(url):
        raise click.ClickException(
            "REDIS_URL names a Redis on another machine (or a Cluster or Sentinel group): its "
            "data files are not here, so backing it up is for whoever runs that Redis (its "
            "RDB snapshots or AOF, or the provider's backups). Nothing was written."
        )
    target = backup.backup_path(path)
    if not os.path.isdir(os.path.dirname(os.path.abspath(target))):
        raise click.BadParameter(f"no directory {os.path.dirname(target)}", param_hint="PATH")
    with open_store() as store:
        try:
            saved = backup.snapshot(store.client)
        except backup.BackupError as error:
            raise click.ClickException(str(error)) from None
    if not os.path.isfile(saved.path) or not backup.is_rdb(saved.path):
        raise click.ClickException(
            f"Redis saved its snapshot as {saved.path}, which is not on this machine: backing "
            "up that Redis is for whoever runs it. Nothing was written."
        )
    size = backup.copy_atomically(saved.path, target)
    keys = f"{saved.keys} key{'s' if saved.keys != 1 else ''}"
    click.echo(f"Backup written: {target} ({size} bytes, {keys}).")


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, readable=True))
def restore_command(path: str) -> None:
    """Replace the data of REACTIONS_DATA_DIR by the backup PATH (from 'reactions backup').

    Stop the server first. The embedded Redis starts next time with exactly the backup's
    data; the previous append-only file is kept beside it, renamed. A file that is not a
    backup, or one Redis cannot load, changes nothing.
    """
    conf = settings()
    if conf["REDIS_URL"]:
        raise click.ClickException(
            "REDIS_URL is set: 'reactions restore' fills the embedded Redis's "
            "REACTIONS_DATA_DIR. Restore a REDIS_URL Redis with its own tools (stop it, put "
            "the RDB file in its directory as its dbfilename, with appendonly off)."
        )
    data_dir = conf["REACTIONS_DATA_DIR"]
    try:
        keys, kept = backup.restore(path, data_dir, conf["REACTIONS_APPENDFSYNC"])
    except backup.BackupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Restored {keys} key{'s' if keys != 1 else ''} from {path} into {data_dir}.")
    if kept:
        click.echo(f"The previous data is kept in {kept}.")
