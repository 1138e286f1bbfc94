"""The Lua scripts (`lua/*.lua`, read once at import) and the KEYS and ARGV each is given.

Each script's header names its slots, and the tuples next to each builder below list the same
names in the same order (tests/test_store_scripts.py holds the two together). A name starting
with `*` is the rest of the list, of any length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .days import utc_day
from .keys import (
    DAY_RETENTION_SECONDS,
    address_rate_key,
    article_numbers_key,
    channel,
    client_rate_key,
    counts_key,
    day_key,
    day_total_key,
    imported_key,
    index_key,
    meta_key,
    new_articles_key,
    own_field,
    own_key,
    own_rate_key,
    pending_key,
    reaction_index_prefix,
    readers_key,
    site_rate_key,
    stats_key,
)

if TYPE_CHECKING:
    from .records import Limits, Site

LUA_DIR = Path(__file__).with_name("lua")


def read_lua(name: str) -> str:
    """The text of `lua/<name>.lua`, which ships inside the package."""
    return (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


# How many pending votes make the vote script fold them into the statistics (see lua/fold.lua).
FOLD_AT = 100

# `fold()`, the start of every script that folds the site's pending votes.
FOLD_LUA = read_lua("fold")
FOLD_SCRIPT = FOLD_LUA + read_lua("fold_pending")
VOTE_SCRIPT = FOLD_LUA + read_lua("vote")
RESET_SCRIPT = FOLD_LUA + read_lua("reset")
IMPORT_SCRIPT = read_lua("import")
MINE_SCRIPT = FOLD_LUA + read_lua("mine")
INDEX_READERS_SCRIPT = read_lua("index_readers")

VOTE_KEYS = (
    "counts_key",
    "readers_key",
    "index_key",
    "meta_key",
    "pending_key",
    "stats_key",
    "client_rate_key",
    "site_rate_key",
    "new_articles_key",
    "address_rate_key",
    "own_key",
    "article_numbers_key",
)
VOTE_ARGS = (
    "reader",
    "wanted",
    "article",
    "channel",
    "now",
    "url",
    "title",
    "retention",
    "client_limit",
    "site_limit",
    "new_articles_limit",
    "day",
    "index_prefix",
    "day_prefix",
    "total_prefix",
    "fold_at",
    "origin",
    "address_limit",
    "own_field",
)


def vote_arguments(
    site: Site,
    article: str,
    reader: str,
    choice: str | None,
    url: str,
    title: str,
    now: float,
    client: str,
    limits: Limits,
    origin: str = "",
    address: str = "",
) -> tuple[list[str], list]:
    """KEYS and ARGV of the vote script, in the order of VOTE_KEYS and VOTE_ARGS. `origin`
    is the page's the vote came from (its Origin header), "" for the server's own calls."""
    day = utc_day(now)
    name = site.name
    index, meta, pending, stats, index_prefix, day_prefix, total_prefix, retention = site.vote_keys
    keys = [
        counts_key(name, article),
        readers_key(name, article),
        index,
        meta,
        pending,
        stats,
        client_rate_key(name, client, int(now // 60)),
        site_rate_key(name, int(now)),
        new_articles_key(name, int(now // 3600)),
        address_rate_key(name, address, int(now // 60)),
        own_key(name, reader),
        article_numbers_key(name),
    ]
    args = [
        reader,
        choice or "",
        article,
        channel(name, article),
        f"{int(now):010d}",  # fixed width for the pending line (see lua/fold.lua)
        url,
        title,
        retention,
        limits.per_client_minute,
        limits.per_site_second,
        limits.new_articles_hour,
        day,
        index_prefix,
        day_prefix,
        total_prefix,
        FOLD_AT,
        origin,
        limits.per_address_minute,
        own_field(reader),
    ]
    return keys, args


def fold_arguments(site: str) -> tuple[str, str, str, str, str, int]:
    """pending, stats, and the prefixes and retention that `fold` (lua/fold.lua) takes."""
    return (
        pending_key(site),
        stats_key(site),
        reaction_index_prefix(site),
        day_key(site, ""),
        day_total_key(site, ""),
        DAY_RETENTION_SECONDS,
    )


FOLD_KEYS = ("pending_key", "index_key", "stats_key")
FOLD_ARGS = ("index_prefix", "day_prefix", "total_prefix", "retention")


def fold_script_arguments(site: str) -> tuple[list[str], list]:
    """KEYS and ARGV of the fold script, in the order of FOLD_KEYS and FOLD_ARGS."""
    pending, stats, *args = fold_arguments(site)
    return [pending, index_key(site), stats], args


RESET_KEYS = (
    "counts_key",
    "readers_key",
    "index_key",
    "imported_key",
    "stats_key",
    "pending_key",
    "*reaction_index_keys",
)
RESET_ARGS = ("article", "channel", "index_prefix", "day_prefix", "total_prefix", "retention")


def reset_arguments(site: Site, article: str) -> tuple[list[str], list]:
    """KEYS and ARGV of the reset script, in the order of RESET_KEYS and RESET_ARGS."""
    name = site.name
    pending, stats, *prefixes_and_retention = fold_arguments(name)
    keys = [
        counts_key(name, article),
        readers_key(name, article),
        index_key(name),
        imported_key(name),
        stats,
        pending,
        *(index_key(name, r.id) for r in site.all_reactions),
    ]
    return keys, [article, channel(name, article), *prefixes_and_retention]


IMPORT_KEYS = (
    "counts_key",
    "index_key",
    "meta_key",
    "imported_key",
    "stats_key",
    "*reaction_index_keys",
)
IMPORT_ARGS = ("article", "now", "url", "title", "imported", "channel", "*reactions")


def import_arguments(
    site: Site, article: str, counts: dict[str, int], url: str, title: str, now: float
) -> tuple[list[str], list]:
    """KEYS and ARGV of the import script, in the order of IMPORT_KEYS and IMPORT_ARGS:
    `counts` as the article's imported counts, for each of the site's reactions."""
    ids = [r.id for r in site.all_reactions]
    name = site.name
    wanted = {r: int(counts.get(r, 0)) for r in ids}
    keys = [
        counts_key(name, article),
        index_key(name),
        meta_key(name),
        imported_key(name),
        stats_key(name),
        *(index_key(name, r) for r in ids),
    ]
    args = [article, int(now), url, title, json.dumps(wanted), channel(name, article), *ids]
    return keys, args


MINE_KEYS = (
    "own_key",
    "article_numbers_key",
    "meta_key",
    "index_key",
    "pending_key",
    "stats_key",
    "own_rate_key",
)
MINE_ARGS = (
    "own_field",
    "reader",
    "erase",
    "only",
    "counts_prefix",
    "readers_prefix",
    "channel_prefix",
    "now",
    "day",
    "own_limit",
    "index_prefix",
    "day_prefix",
    "total_prefix",
    "retention",
    "fold_at",
)


def mine_arguments(
    site: str,
    reader: str,
    erase: bool,
    only: str,
    now: float,
    address: str,
    limits: Limits,
) -> tuple[list[str], list]:
    """KEYS and ARGV of the script that lists (or with `erase`, takes back) a reader's own
    reactions, in the order of MINE_KEYS and MINE_ARGS; `only` is one article, "" for all."""
    pending, stats, index_prefix, day_prefix, total_prefix, retention = fold_arguments(site)
    keys = [
        own_key(site, reader),
        article_numbers_key(site),
        meta_key(site),
        index_key(site),
        pending,
        stats,
        own_rate_key(site, address, int(now // 60)),
    ]
    args = [
        own_field(reader),
        reader,
        "1" if erase else "",
        only,
        counts_key(site, ""),
        readers_key(site, ""),
        channel(site, ""),
        f"{int(now):010d}",
        utc_day(now),
        limits.own_data_per_minute,
        index_prefix,
        day_prefix,
        total_prefix,
        retention,
        FOLD_AT,
    ]
    return keys, args


INDEX_READERS_KEYS = ("meta_key", "article_numbers_key", "stats_key")
INDEX_READERS_ARGS = ("article", "*entries")


def index_readers_arguments(site: str, article: str, readers: list[str]) -> tuple[list[str], list]:
    """KEYS and ARGV of the script that adds `readers` (hashes) of an article to their own
    index, in the order of INDEX_READERS_KEYS and INDEX_READERS_ARGS."""
    entries = []
    for reader in readers:
        entries += [own_key(site, reader), own_field(reader)]
    return [meta_key(site), article_numbers_key(site), stats_key(site)], [article, *entries]
