"""The Lua scripts read KEYS and ARGV by position: each script's header names its slots, the
script binds them to locals of those names, and the Python builder fills them in that order.
These tests hold the three together, so a slot added, dropped or moved in one place fails here
instead of miscounting votes."""

import json
import re

import pytest
from redis.cluster import key_slot

from widget.reactions import DEFAULT_REACTIONS
from widget.store import (
    DAY_RETENTION_SECONDS,
    FOLD_ARGS,
    FOLD_AT,
    FOLD_KEYS,
    FOLD_SCRIPT,
    IMPORT_ARGS,
    IMPORT_KEYS,
    IMPORT_SCRIPT,
    INDEX_READERS_ARGS,
    INDEX_READERS_KEYS,
    INDEX_READERS_SCRIPT,
    MINE_ARGS,
    MINE_KEYS,
    MINE_SCRIPT,
    RESET_ARGS,
    RESET_KEYS,
    RESET_SCRIPT,
    VOTE_ARGS,
    VOTE_KEYS,
    VOTE_SCRIPT,
    Limits,
    Site,
    address_rate_key,
    article_numbers_key,
    channel,
    client_rate_key,
    counts_key,
    day_key,
    day_total_key,
    fold_script_arguments,
    import_arguments,
    imported_key,
    index_key,
    index_readers_arguments,
    meta_key,
    mine_arguments,
    new_articles_key,
    own_field,
    own_key,
    own_rate_key,
    pending_key,
    reaction_index_prefix,
    readers_key,
    reset_arguments,
    site_rate_key,
    stats_key,
    utc_day,
    vote_arguments,
)
from widget.store.scripts import LUA_DIR, read_lua

SITE = Site(
    name="blog",
    origins=("https://blog.example",),
    reactions=DEFAULT_REACTIONS[:3],
    retired=DEFAULT_REACTIONS[3:4],  # a retired reaction's index is still kept up to date
)
ARTICLE = "post-1"
NOW = 1_700_000_123.75
URL = "https://blog.example/post-1"
IDS = [r.id for r in SITE.all_reactions]
READER = "0123456789abcdef0123456789abcdef"
FOLD_VALUES = {
    "pending_key": pending_key("blog"),
    "index_key": index_key("blog"),
    "stats_key": stats_key("blog"),
    "index_prefix": reaction_index_prefix("blog"),
    "day_prefix": day_key("blog", ""),
    "total_prefix": day_total_key("blog", ""),
    "retention": DAY_RETENTION_SECONDS,
}
ARTICLE_VALUES = {
    "counts_key": counts_key("blog", ARTICLE),
    "readers_key": readers_key("blog", ARTICLE),
    "meta_key": meta_key("blog"),
    "imported_key": imported_key("blog"),
    "article": ARTICLE,
    "channel": channel("blog", ARTICLE),
    "url": URL,
    "title": "First post",
    "*reaction_index_keys": [index_key("blog", r) for r in IDS],
}

# name, slot names (KEYS, ARGV), what the builder builds, and what each named slot must hold.
SCRIPTS = [
    pytest.param(
        "vote",
        VOTE_KEYS,
        VOTE_ARGS,
        lambda: vote_arguments(
            SITE,
            ARTICLE,
            READER,
            IDS[1],
            URL,
            "First post",
            NOW,
            "client-hash",
            Limits(
                per_client_minute=11,
                per_site_second=22,
                new_articles_hour=33,
                per_address_minute=44,
            ),
            "https://blog.example",
            "address-hash",
        ),
        FOLD_VALUES
        | ARTICLE_VALUES
        | {
            "client_rate_key": client_rate_key("blog", "client-hash", int(NOW // 60)),
            "site_rate_key": site_rate_key("blog", int(NOW)),
            "new_articles_key": new_articles_key("blog", int(NOW // 3600)),
            "address_rate_key": address_rate_key("blog", "address-hash", int(NOW // 60)),
            "reader": READER,
            "wanted": IDS[1],
            "now": "1700000123",
            "client_limit": 11,
            "site_limit": 22,
            "new_articles_limit": 33,
            "day": utc_day(NOW),
            "fold_at": FOLD_AT,
            "origin": "https://blog.example",
            "address_limit": 44,
            "own_key": own_key("blog", READER),
            "own_field": "456789abcdef",
            "article_numbers_key": article_numbers_key("blog"),
        },
        id="vote",
    ),
    pytest.param(
        "mine",
        MINE_KEYS,
        MINE_ARGS,
        lambda: mine_arguments(
            "blog", READER, True, ARTICLE, NOW, "address-hash", Limits(own_data_per_minute=55)
        ),
        FOLD_VALUES
        | ARTICLE_VALUES
        | {
            "own_key": "rx:{blog}:m:0123",
            "article_numbers_key": article_numbers_key("blog"),
            "own_rate_key": own_rate_key("blog", "address-hash", int(NOW // 60)),
            "own_field": own_field(READER),
            "reader": READER,
            "erase": "1",
            "only": ARTICLE,
            "counts_prefix": counts_key("blog", ""),
            "readers_prefix": readers_key("blog", ""),
            "channel_prefix": channel("blog", ""),
            "now": "1700000123",
            "day": utc_day(NOW),
            "own_limit": 55,
            "fold_at": FOLD_AT,
        },
        id="mine",
    ),
    pytest.param(
        "index_readers",
        INDEX_READERS_KEYS,
        INDEX_READERS_ARGS,
        lambda: index_readers_arguments("blog", ARTICLE, [READER, "f" * 32]),
        ARTICLE_VALUES
        | FOLD_VALUES
        | {
            "article_numbers_key": article_numbers_key("blog"),
            "*entries": ["rx:{blog}:m:0123", "456789abcdef", "rx:{blog}:m:ffff", "f" * 12],
        },
        id="index_readers",
    ),
    pytest.param(
        "fold_pending",
        FOLD_KEYS,
        FOLD_ARGS,
        lambda: fold_script_arguments("blog"),
        FOLD_VALUES,
        id="fold_pending",
    ),
    pytest.param(
        "reset",
        RESET_KEYS,
        RESET_ARGS,
        lambda: reset_arguments(SITE, ARTICLE),
        FOLD_VALUES | ARTICLE_VALUES,
        id="reset",
    ),
    pytest.param(
        "import",
        IMPORT_KEYS,
        IMPORT_ARGS,
        lambda: import_arguments(SITE, ARTICLE, {IDS[0]: 5, IDS[3]: 2}, URL, "First post", NOW),
        FOLD_VALUES
        | ARTICLE_VALUES
        | {
            "now": int(NOW),
            "imported": json.dumps({IDS[0]: 5, IDS[1]: 0, IDS[2]: 0, IDS[3]: 2}),
            "*reactions": IDS,
        },
        id="import",
    ),
]

SLOT = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(\.\.)?\]\s+(\*?\w+)\s", re.MULTILINE)


def header_slots(lua: str) -> dict[str, list[str]]:
    """The slot names a script's header lists, checking that they are numbered 1, 2, … and
    that only the last slot of a list (`[n..]`) takes the rest."""
    slots = {"KEYS": [], "ARGV": []}
    for table, position, rest, name in SLOT.findall(lua):
        names = slots[table]
        assert int(position) == len(names) + 1, f"{table}[{position}] {name} is out of order"
        assert not names or not names[-1].startswith("*"), f"{table} slot after the rest"
        assert bool(rest) == name.startswith("*"), f"{table}[{position}] {name}: rest or not"
        names.append(name)
    return slots


def bound(values: list, names: tuple[str, ...]) -> dict[str, object]:
    """The builder's values by slot name; a `*` name takes the rest."""
    if names and names[-1].startswith("*"):
        fixed = len(names) - 1
        return dict(zip(names[:-1], values[:fixed], strict=True)) | {names[-1]: values[fixed:]}
    return dict(zip(names, values, strict=True))


@pytest.mark.parametrize(("script", "key_names", "arg_names", "build", "expected"), SCRIPTS)
def test_a_script_header_names_the_slots_its_builder_fills(
    script, key_names, arg_names, build, expected
):
    assert header_slots(read_lua(script)) == {"KEYS": list(key_names), "ARGV": list(arg_names)}


@pytest.mark.parametrize(("script", "key_names", "arg_names", "build", "expected"), SCRIPTS)
def test_a_script_binds_each_named_slot_to_a_local_of_that_name(
    script, key_names, arg_names, build, expected
):
    lua = read_lua(script)
    for table, names in (("KEYS", key_names), ("ARGV", arg_names)):
        for position, name in enumerate(names, start=1):
            if not name.startswith("*"):
                assert f"\nlocal {name} = {table}[{position}]\n" in lua, f"{name} unbound"
    # Past the bindings, the body reads no fixed slot by its number.
    body = lua[lua.rindex(" = ARGV[") :].split("\n", 1)[1]
    assert not re.search(r"(KEYS|ARGV)\[\d+\]", body)


@pytest.mark.parametrize(("script", "key_names", "arg_names", "build", "expected"), SCRIPTS)
def test_an_argument_builder_puts_each_value_in_its_named_slot(
    script, key_names, arg_names, build, expected
):
    keys, args = build()
    named = bound(keys, key_names) | bound(args, arg_names)
    assert named == {name: expected[name] for name in key_names + arg_names}


@pytest.mark.parametrize(("script", "key_names", "arg_names", "build", "expected"), SCRIPTS)
def test_every_key_of_a_script_lives_in_the_site_slot_of_a_cluster(
    script, key_names, arg_names, build, expected
):
    keys, _ = build()
    assert {key_slot(key.encode()) for key in keys} == {key_slot(b"blog")}


@pytest.mark.parametrize(
    "text",
    [FOLD_SCRIPT, VOTE_SCRIPT, RESET_SCRIPT, IMPORT_SCRIPT, MINE_SCRIPT, INDEX_READERS_SCRIPT],
    ids=["fold_pending", "vote", "reset", "import", "mine", "index_readers"],
)
def test_every_script_compiles_in_redis(redis_client, text):
    sha = redis_client.script_load(text)
    assert redis_client.script_exists(sha) == [True]


def test_every_lua_file_is_a_script_or_the_fold_they_share():
    loaded = {"fold", "fold_pending", "vote", "reset", "import", "mine", "index_readers"}
    assert {path.stem for path in LUA_DIR.glob("*.lua")} == loaded
    folding = (FOLD_SCRIPT, VOTE_SCRIPT, RESET_SCRIPT, MINE_SCRIPT)
    assert all(read_lua("fold") in text for text in folding)
