"""The `reactions` command: run the server and manage sites."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import urlsplit

import click
import redis

from . import __version__, backup, config, logs
from .admin_export import EXPORT_DAY_CHOICES, csv_lines, json_chunks
from .embed import embed_html
from .embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
    answers,
    socket_url,
)
from .reactions import (
    CONTROL_CHARS,
    REACTION_ID,
    SET_STYLES,
    THUMBS_REACTIONS,
    Reaction,
    ReactionsError,
    validate_origin,
    validate_set_name,
    validate_site,
)
from .security import hash_password
from .serving import start_gunicorn, supervise, wait_until_up
from .store import SELF_ORIGIN, NamedSet, Site, Store, connect, last_days
from .wordpress import CONTENT_TYPES, THUMBS_SET, WORDPRESS_TYPES, read_export

# What a terminal (Ctrl-C, closing it), systemd, Docker or a process manager sends to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOPPING = "Stopping: open requests and live streams have 5 s to finish (Ctrl-C again: at once).\n"


def settings() -> dict:
    """The validated settings; the command's log lines take their format from them."""
    try:
        conf = config.load()
    except config.ConfigError as error:
        raise click.ClickException(str(error)) from None
    logs.setup(conf["REACTIONS_LOG_FORMAT"])
    return conf


@contextlib.contextmanager
def open_store() -> Iterator[Store]:
    """The configured Redis; else the embedded one of the data directory, running or not."""
    conf = settings()
    url = conf["REDIS_URL"] or socket_url(conf["REACTIONS_DATA_DIR"])
    embedded = None
    try:
        if not conf["REDIS_URL"] and not answers(url):
            embedded = EmbeddedRedis(conf["REACTIONS_DATA_DIR"], conf["REACTIONS_APPENDFSYNC"])
            embedded.start()
        yield Store(connect(url, conf["REACTIONS_REDIS_TIMEOUT"] * 4), conf["REACTIONS_SECRET_KEY"])
    except EmbeddedRedisError as error:
        raise click.ClickException(str(error)) from None
    except redis.RedisError as error:
        raise click.ClickException(f"cannot reach Redis at {url}: {error}") from None
    finally:
        if embedded:
            embedded.stop()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reactions")
def main() -> None:
    """reactions: a self-hosted emoji-reaction bar counted in Redis.

    Settings come from the environment: REDIS_URL (unset: an embedded Redis in
    REACTIONS_DATA_DIR, default ./var), REACTIONS_PUBLIC_URL, REACTIONS_SECRET_KEY,
    REACTIONS_ADMIN_PASSWORD, REACTIONS_APPENDFSYNC, REACTIONS_REDIS_PRIORITY.
    """


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Processes."
)
@click.option(
    "--worker-class", type=click.Choice(["gevent", "gthread"]), default="gevent",
    show_default=True,
    help="gevent holds thousands of idle live streams per process; gthread needs a thread each.",
)  # fmt: skip
@click.option(
    "--connections", default=2000, show_default=True, type=click.IntRange(10, 100_000),
    help="Open connections (live streams included) per gevent worker.",
)  # fmt: skip
@click.option(
    "--threads", default=16, show_default=True, type=click.IntRange(1, 1000),
    help="Threads per worker process (gthread only).",
)  # fmt: skip
def serve(
    host: str, port: int, workers: int, worker_class: str, connections: int, threads: int
) -> None:
    """Run the server under gunicorn.

    Without REDIS_URL it first starts the embedded Redis (AOF persistence in
    REACTIONS_DATA_DIR), restarts it should it die, and exits with status 1 when it cannot
    (for the process manager to restart the server). Ctrl-C, SIGINT, SIGTERM or SIGHUP
    stop gunicorn gracefully (open requests finish, 5 s at most; a second signal stops it at
    once), then the embedded Redis, and exit 0.
    """
    conf = settings()
    env = dict(os.environ)
    stopping: list[int] = []
    server: subprocess.Popen | None = None

    def stop(signum, _frame):
        stopping.append(signum)
        if server is None or server.poll() is not None:
            return
        if len(stopping) == 1:
            server.send_signal(signal.SIGTERM)
            # os.write: a print here could interrupt a print of the main thread's
            os.write(sys.stderr.fileno(), STOPPING.encode())
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)

    previous = {
        signum: signal.signal(signum, stop)
        for signum in STOP_SIGNALS
        # under nohup, closing the terminal must not stop the server
        if not (signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN)
    }
    embedded = None
    returncode = 0
    redis_kind = "embedded" if not conf["REDIS_URL"] else urlsplit(conf["REDIS_URL"]).scheme
    try:
        if not conf["REDIS_URL"]:
            embedded = EmbeddedRedis(
                conf["REACTIONS_DATA_DIR"],
                conf["REACTIONS_APPENDFSYNC"],
                priority=conf["REACTIONS_REDIS_PRIORITY"],
            )
            try:
                embedded.start()
            except EmbeddedRedisError as error:
                raise click.ClickException(str(error)) from None
            env["REDIS_URL"] = embedded.url
            click.echo(f"Embedded Redis: data in {embedded.data_dir}, {embedded.priority_note}")
        password = admin_password_note(conf, env["REDIS_URL"])
        if not stopping:
            server = start_gunicorn(host, port, workers, worker_class, connections, threads, env)
            if stopping:  # a signal came while gunicorn started
                server.send_signal(signal.SIGTERM)
            shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
            if wait_until_up(f"{base}/healthz", server):
                logs.event(
                    "server.start", f"serving {base}", port=port, workers=workers, redis=redis_kind
                )
                click.echo(f"Demo page: {base}/demo")
                click.echo(f"Admin: {base}/admin/ ({password})")
                click.echo(public_url_note(conf["REACTIONS_PUBLIC_URL"]))
            returncode = supervise(server, embedded, stopping)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait()
        if embedded:
            embedded.stop()
            click.echo("Embedded Redis stopped.")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server is not None:
            stopped_by = signal.Signals(stopping[0]).name if stopping else None
            logs.event("server.stop", "server stopped", status=returncode, signal=stopped_by)
    if returncode and not stopping:
        sys.exit(returncode)


def admin_password_note(conf: dict, url: str) -> str:
    """Where the admin password comes from, or how to set one, for `serve` to print."""
    if conf["REACTIONS_ADMIN_PASSWORD"]:
        return "password from REACTIONS_ADMIN_PASSWORD"
    try:
        stored = Store(connect(url, conf["REACTIONS_REDIS_TIMEOUT"] * 4)).admin_password_hash()
    except redis.RedisError as error:
        return f"could not read the stored admin password: {error}"
    if stored:
        return "password set with 'reactions admin set-password'"
    return (
        "no admin password yet: run 'reactions admin set-password' or set "
        "REACTIONS_ADMIN_PASSWORD, then log in"
    )


def public_url_note(public_url: str) -> str:
    if public_url:
        return f"Embed snippets load {public_url}/embed.js (REACTIONS_PUBLIC_URL)."
    return (
        "REACTIONS_PUBLIC_URL is not set: the admin's embed snippets use the address its "
        "page is opened at."
    )


@main.group()
def sites() -> None:
    """Register the sites that may embed the bar."""


def parse_origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    """Origins as the browser sends them, each once (`self`: this server's own origin, as in
    the admin); bad input is a usage error (exit 2)."""
    try:
        return tuple(dict.fromkeys(o if o == SELF_ORIGIN else validate_origin(o) for o in origins))
    except ReactionsError as error:
        raise click.BadParameter(error.detail, param_hint="origin") from None


def shown_origins(site: Site) -> str:
    return ", ".join("(this server's own origin)" if o == SELF_ORIGIN else o for o in site.origins)


@sites.command("add")
@click.argument("name")
@click.option(
    "--origin", "origins", multiple=True, required=True,
    help="An origin whose pages may send reactions, e.g. https://blog.example.com (repeat).",
)  # fmt: skip
def sites_add(name: str, origins: tuple[str, ...]) -> None:
    """Register a new site NAME and print the snippet to embed.

    An existing site is left alone: change its origins with 'reactions sites origins'.
    """
    try:
        site_name = validate_site(name)
    except ReactionsError as error:
        raise click.BadParameter(error.detail, param_hint="NAME") from None
    allowed = parse_origins(origins)
    with open_store() as store:
        existing = store.get_site(site_name)
        if existing:
            raise click.ClickException(
                f"site '{site_name}' exists already (allows {shown_origins(existing)}); "
                f"change its origins with 'reactions sites origins add {site_name} ORIGIN' "
                f"or 'reactions sites origins remove {site_name} ORIGIN'"
            )
        site = store.save_site(Site(site_name, allowed))
    click.echo(f"Site '{site.name}' allows {shown_origins(site)}.")
    public_url = settings()["REACTIONS_PUBLIC_URL"]
    click.echo("Embed it with:")
    snippet = embed_html(public_url or "https://YOUR-REACTIONS-SERVER", site.name)
    click.echo("".join(f"  {line}\n" for line in snippet.splitlines()), nl=False)
    if not public_url:
        click.echo(
            "Replace YOUR-REACTIONS-SERVER with this server's public address, or set "
            "REACTIONS_PUBLIC_URL (e.g. https://reactions.example.com) and every snippet "
            "names it."
        )


@sites.group("origins")
def sites_origins() -> None:
    """Change which origins may send reactions to a registered site."""


def change_origins(name: str, change) -> None:
    """Apply `change(site) -> origins` to site NAME's record, keeping its reaction set and
    creation time, and show the result."""
    with open_store() as store:
        site = store.get_site(name)
        if site is None:
            raise click.ClickException(f"no site '{name}': add it with 'reactions sites add'")
        site = store.save_site(replace(site, origins=change(site)))
    click.echo(f"Site '{site.name}' allows {shown_origins(site)}.")


@sites_origins.command("add")
@click.argument("name")
@click.argument("origins", nargs=-1, required=True)
def sites_origins_add(name: str, origins: tuple[str, ...]) -> None:
    """Allow ORIGINS to send reactions to site NAME too.

    For example: reactions sites origins add blog https://www.example.com
    """
    added = parse_origins(origins)

    def add(site: Site) -> tuple[str, ...]:
        for origin in added:
            if origin in site.origins:
                click.echo(f"{origin} is allowed already.")
        return tuple(dict.fromkeys(site.origins + added))

    change_origins(name, add)


@sites_origins.command("remove")
@click.argument("name")
@click.argument("origins", nargs=-1, required=True)
def sites_origins_remove(name: str, origins: tuple[str, ...]) -> None:
    """Stop accepting reactions from ORIGINS for site NAME.

    Nothing changes when one of them is not allowed, or when none would be left.
    """
    removed = parse_origins(origins)

    def remove(site: Site) -> tuple[str, ...]:
        absent = [o for o in removed if o not in site.origins]
        if absent:
            raise click.ClickException(
                f"site '{site.name}' does not allow {', '.join(absent)} (it allows "
                f"{shown_origins(site)}); nothing changed"
            )
        left = tuple(o for o in site.origins if o not in removed)
        if not left:
            raise click.ClickException(
                f"site '{site.name}' needs at least one origin; nothing changed. To stop "
                f"accepting its reactions, remove the site: 'reactions sites remove {site.name}'"
            )
        return left

    change_origins(name, remove)


@sites.command("list")
def sites_list() -> None:
    """Show every site, its allowed origins and its named reaction sets."""
    with open_store() as store:
        for site in store.list_sites():
            click.echo(f"{site.name}\t{shown_origins(site)}")
            for named in site.sets:
                click.echo(f"  set {named.name} ({named.style}): {shown_reactions(named)}")


def shown_reactions(named: NamedSet) -> str:
    return " ".join(f"{r.emoji} {r.id}" for r in named.reactions)


@sites.group("sets")
def sites_sets() -> None:
    """Named reaction sets a site offers besides its default one, each counted apart (embed
    one with <emoji-reactions data-set="SET">)."""


# The caps the admin's reaction editor has.
MAX_EMOJI_LENGTH = 16
MAX_LABEL_LENGTH = 32


def parse_set_reaction(value: str) -> Reaction:
    """`id:emoji:label` (the label may hold ":"); bad input is a usage error (exit 2)."""
    parts = value.split(":", 2)
    wrong = "give each reaction as id:emoji:label, e.g. like:\N{THUMBS UP SIGN}:Like"
    if len(parts) != 3:
        raise click.BadParameter(wrong, param_hint="--reaction")
    reaction_id, emoji, label = (part.strip() for part in parts)
    if not REACTION_ID.fullmatch(reaction_id):
        raise click.BadParameter(
            f"reaction id {reaction_id!r}: 1-32 lowercase letters, digits, '-' or '_', "
            "starting with a letter",
            param_hint="--reaction",
        )
    for name, text, most in (
        ("emoji", emoji, MAX_EMOJI_LENGTH),
        ("label", label, MAX_LABEL_LENGTH),
    ):
        if not text or len(text) > most or CONTROL_CHARS.search(text):
            raise click.BadParameter(
                f"the {name} of '{reaction_id}' must be 1-{most} characters", "--reaction"
            )
    return Reaction(reaction_id, emoji, label)


@sites_sets.command("add")
@click.argument("name")
@click.argument("set_name", metavar="SET")
@click.option(
    "--style",
    type=click.Choice(SET_STYLES),
    default=None,
    help="count: the compact style, counts instead of percentages "
    "(default: count for thumbs, else percent).",
)
@click.option(
    "--reaction", "reactions", multiple=True, metavar="ID:EMOJI:LABEL",
    help="A reaction of the set, in order (repeat); 'thumbs' defaults to like and dislike.",
)  # fmt: skip
def sites_sets_add(name: str, set_name: str, style: str | None, reactions: tuple[str, ...]) -> None:
    """Add reaction set SET to site NAME, or change its reactions and style.

    For example: reactions sites sets add blog thumbs --style count
    """
    try:
        set_name = validate_set_name(set_name)
    except ReactionsError as error:
        raise click.BadParameter(error.detail, param_hint="SET") from None
    if not set_name:
        raise click.BadParameter("the default set has no name: give one", param_hint="SET")
    chosen = tuple(parse_set_reaction(r) for r in reactions)
    if len({r.id for r in chosen}) < len(chosen):
        raise click.BadParameter("each reaction id once", param_hint="--reaction")
    with open_store() as store:
        site = store.get_site(name)
        if site is None:
            raise click.ClickException(f"no site '{name}': add it with 'reactions sites add'")
        existing = site.named_set(set_name)
        if not chosen:
            if existing:
                chosen = existing.reactions
            elif set_name == "thumbs":
                chosen = THUMBS_REACTIONS
            else:
                raise click.UsageError(
                    f"set '{set_name}' needs its reactions: --reaction id:emoji:label (repeat)"
                )
        if style is None:
            style = existing.style if existing else "count" if set_name == "thumbs" else "percent"
        # A reaction dropped from an existing set is retired: its votes are kept, not offered.
        kept = existing.all_reactions if existing else ()
        offered = {r.id for r in chosen}
        retired = tuple(r for r in kept if r.id not in offered)
        named = NamedSet(set_name, chosen, style, retired)
        sets = tuple(named if s.name == set_name else s for s in site.sets)
        if not existing:
            sets += (named,)
        store.save_site(replace(site, sets=sets))
    click.echo(f"Site '{name}' set '{set_name}' ({style}): {shown_reactions(named)}.")
    click.echo(f'Embed it with: <emoji-reactions data-set="{set_name}"></emoji-reactions>')


@sites_sets.command("remove")
@click.argument("name")
@click.argument("set_name", metavar="SET")
def sites_sets_remove(name: str, set_name: str) -> None:
    """Stop offering reaction set SET of site NAME (its counts stay in Redis, and adding
    the set again shows them)."""
    with open_store() as store:
        site = store.get_site(name)
        if site is None:
            raise click.ClickException(f"no site '{name}': add it with 'reactions sites add'")
        if site.named_set(set_name) is None:
            raise click.ClickException(f"site '{name}' has no set '{set_name}'")
        store.save_site(replace(site, sets=tuple(s for s in site.sets if s.name != set_name)))
    click.echo(f"Site '{name}' set '{set_name}' removed; its counts stay in Redis.")


@sites.command("index-readers")
@click.argument("name")
def sites_index_readers(name: str) -> None:
    """Let readers list and take back the reactions they gave on site NAME before this
    version (once, after upgrading; running it again changes nothing)."""
    with open_store() as store:
        added = store.index_own_reactions(name)
    click.echo(f"Site '{name}': {added} earlier reactions indexed for their readers.")


@sites.command("remove")
@click.argument("name")
def sites_remove(name: str) -> None:
    """Stop accepting reactions for site NAME (its counts stay in Redis)."""
    with open_store() as store:
        if not store.remove_site(name):
            raise click.ClickException(f"no registered site '{name}'")
    click.echo(f"Site '{name}' removed.")


@main.group()
def admin() -> None:
    """Manage the admin login."""


@admin.command("set-password")
@click.password_option(help="The new admin password (asked twice when not given).")
def admin_set_password(password: str) -> None:
    """Store a salted hash of the admin password in Redis.

    REACTIONS_ADMIN_PASSWORD, when set, takes precedence over the stored hash. Every open
    admin login ends: log in again with the new password.
    """
    if len(password) < 10:
        raise click.BadParameter("use at least 10 characters", param_hint="password")
    with open_store() as store:
        store.set_admin_password_hash(hash_password(password))
    public_url = settings()["REACTIONS_PUBLIC_URL"]
    click.echo(f"Admin password saved; open logins ended. Log in at {public_url}/admin/.")


@admin.command("unlock")
def admin_unlock() -> None:
    """Lift the login lock-out now, for every address.

    Failed logins lock an address out for 15 minutes, and every address once too many fail
    together (REACTIONS_LOGIN_FAILURES_GLOBAL); a login from the server's own machine is
    never held by the latter.
    """
    with open_store() as store:
        removed = store.unlock_admin_login()
    click.echo(f"Login unlocked ({removed} failure counter{'s' if removed != 1 else ''} removed).")


@main.command("export")
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


@main.group("import")
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


@main.command("backup")
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


@main.command("restore")
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


if __name__ == "__main__":
    main()
