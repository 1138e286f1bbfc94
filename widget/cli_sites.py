"""`reactions sites …`: register the sites that may embed the bar, their origins and their
named reaction sets."""

from __future__ import annotations

from dataclasses import replace

import click

from .cli_common import open_store, settings
from .embed import embed_html
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
from .store import SELF_ORIGIN, NamedSet, Site


@click.group()
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
