"""`reactions import wordpress`: a site owner brings Booster Extension counts over from
WordPress, with exports as WordPress (wp-admin → Tools → Export) and WordPress.com write them.

The fixtures under tests/wordpress/ follow wp-admin/includes/export.php of WordPress 6.7
(WXR 1.2), 3.1 (1.1) and 3.0 (1.0), and WordPress.com's variant (https namespaces).
"""

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from widget.cli import main
from widget.reactions import THUMBS_REACTIONS, Reaction
from widget.store import SITES_KEY, NamedSet, Site, scope

EXPORTS = Path(__file__).parent / "wordpress"
FIELD_NOTES = EXPORTS / "fieldnotes.WordPress.2026-05-30.xml"
FIELD_NOTES_LATER = EXPORTS / "fieldnotes.WordPress.2026-06-10.xml"
BLOG = "https://blog.example.com"
# What the readers of the self-hosted blog see after the import: every published post and
# page that has reactions, on its permalink.
FIELD_NOTES_COUNTS = {
    f"{BLOG}/2026/03/spring-walk/": {"happy": 41, "sad": 2, "excited": 17, "sleepy": 3},
    f"{BLOG}/2026/03/herons-of-the-bay/": {"happy": 12, "excited": 9, "surprise": 4},
    f"{BLOG}/2026/03/sourdough-in-a-cold-kitchen/": {"happy": 7, "sad": 1, "angry": 1},
    f"{BLOG}/2026/04/rain-again/": {"sad": 11, "angry": 3, "sleepy": 8},
    f"{BLOG}/2026/04/tom-jerry-and-the-cat-flap/": {"happy": 5, "surprise": 6},
    f"{BLOG}/2026/04/a-list-of-small-things/": {"excited": 2},
    f"{BLOG}/2026/05/the-long-way-round/": {"happy": 19, "excited": 4},
    f"{BLOG}/2026/05/bread-and-butter/": {"happy": 3},
    f"{BLOG}/2026/05/family-pictures/": {"happy": 9, "angry": 1},  # password-protected
    f"{BLOG}/about/": {"happy": 8, "excited": 2},
    f"{BLOG}/about/walks-map/": {"excited": 5},
}
# Addresses of what the export holds but the site does not show as a published article.
FIELD_NOTES_SKIPPED = [
    f"{BLOG}/?p=48",  # a draft, linked by id until it is published
    f"{BLOG}/?p=54",  # scheduled
    f"{BLOG}/2026/02/old-news__trashed/",
    f"{BLOG}/2026/05/quarterly-numbers/",  # private
    f"{BLOG}/portfolio/harbour-series/",  # a custom post type
    f"{BLOG}/2026/03/spring-walk/dunes-at-dawn/",  # an attachment
    f"{BLOG}/?post_type=nav_menu_item&p=60",
]


@pytest.fixture
def runner(redis_server, redis_client):
    runner = CliRunner(env={"REDIS_URL": redis_server.url})
    runner.invoke(main, ["sites", "add", "blog", "--origin", BLOG])
    return runner


def import_wordpress(runner, export, *options):
    return runner.invoke(main, ["import", "wordpress", str(export), "--site", "blog", *options])


def shown(client, article: str) -> dict[str, int]:
    """The counts the widget reads for an article, as a reader's browser asks for them."""
    response = client.get("/api/v1/reactions", query_string={"site": "blog", "article": article})
    assert response.status_code == 200, response.get_json()
    return {r["id"]: r["count"] for r in response.get_json()["reactions"] if r["count"]}


def test_an_export_brings_in_the_published_posts_and_pages_only(runner, client, store):
    result = import_wordpress(runner, FIELD_NOTES)

    assert result.exit_code == 0, result.output
    assert (
        "WordPress export (WXR 1.2): 14 published posts and pages, 1 of them "
        "password-protected; 11 with reactions, 183 reactions.\n"
        "Like/dislike counter: 4 posts and pages with counts, 28 likes, 5 dislikes.\n"
        "Skipped 19 items: 6 navigation menu items, 5 attachments, 1 private post "
        "(2 reactions: --include-private imports them), 1 draft (4 reactions: publish it, "
        "then import a new export), 1 post pending review, 1 post in the trash (2 reactions: "
        "restore it, then import a new export), 1 scheduled post, 1 navigation block menu, "
        "1 global styles item, 1 item of type 'jetpack-portfolio' (7 reactions: --post-type "
        "jetpack-portfolio imports them).\n"
        "Counts changed by +183 (0 when this file was imported before).\n"
        "Like/dislike counts of the set 'thumbs' changed by +33."
    ) in result.output
    assert "twp_be_react_2 has value '-1', not a count: taken as 0" in result.output
    assert {article: shown(client, article) for article in FIELD_NOTES_COUNTS} == (
        FIELD_NOTES_COUNTS
    )
    for article in FIELD_NOTES_SKIPPED:
        assert shown(client, article) == {}, article
    (stats,) = store.article_stats("blog", [f"{BLOG}/2026/04/tom-jerry-and-the-cat-flap/"])
    assert stats.title == "Tom & Jerry and the cat flap"


def test_private_posts_and_custom_post_types_come_in_when_asked(runner, client):
    result = import_wordpress(
        runner, FIELD_NOTES, "--include-private", "--post-type", "jetpack-portfolio"
    )

    assert result.exit_code == 0, result.output
    assert "16 published posts and pages" in result.output and "private post" not in result.output
    assert shown(client, f"{BLOG}/2026/05/quarterly-numbers/") == {"sad": 2}
    assert shown(client, f"{BLOG}/portfolio/harbour-series/") == {"happy": 4, "excited": 3}
    assert shown(client, f"{BLOG}/?p=48") == {}


def test_only_custom_post_types_can_be_added(runner, redis_client):
    result = import_wordpress(runner, FIELD_NOTES, "--post-type", "attachment")

    assert result.exit_code == 2
    assert "'attachment' is not a custom post type" in result.output
    assert redis_client.keys("rx:{blog}:a:*") == []


@pytest.mark.parametrize(
    ("export", "counts"),
    [
        (
            "kitchentable.WordPress.2026-03-10.xml",
            {
                "https://kitchen.example.org/?p=9": {"happy": 14, "excited": 6},
                "https://kitchen.example.org/?p=11": {"happy": 3, "sad": 1},
                "https://kitchen.example.org/?p=13": {"sad": 5, "angry": 2, "sleepy": 1},
                "https://kitchen.example.org/?p=17": {"surprise": 7},
                "https://kitchen.example.org/?page_id=2": {"happy": 2},
                "https://kitchen.example.org/": {},
            },
        ),
        (
            "allotment.wordpress.2011-03-01.xml",
            {
                "http://allotment.example.net/?p=4": {"happy": 6, "sleepy": 2},
                "http://allotment.example.net/?p=6": {"excited": 3},
                "http://allotment.example.net/?page_id=2": {"happy": 1},
                "http://allotment.example.net/": {},
            },
        ),
    ],
)
def test_plain_permalinks_give_every_post_its_own_article(runner, client, export, counts):
    result = import_wordpress(runner, EXPORTS / export)

    assert result.exit_code == 0, result.output
    assert {article: shown(client, article) for article in counts} == counts


@pytest.mark.parametrize(
    ("export", "version", "article", "counts"),
    [
        (
            "allotment.wordpress.2010-08-14.xml",
            "1.0",
            "http://allotment.example.net/2010/01/first-frost/",
            {"happy": 6, "sleepy": 2},
        ),
        (
            "allotment.wordpress.2011-03-01.xml",
            "1.1",
            "http://allotment.example.net/?p=4",
            {"happy": 6, "sleepy": 2},
        ),
        (FIELD_NOTES.name, "1.2", f"{BLOG}/2026/03/herons-of-the-bay/", FIELD_NOTES_COUNTS[
            f"{BLOG}/2026/03/herons-of-the-bay/"
        ]),
        # WordPress.com declares https://wordpress.org/export/1.2/.
        (
            "tidewatcher.wordpress.2026-02-01.000.xml",
            "1.2",
            "https://tidewatcher.wordpress.com/2026/01/11/king-tide/",
            {"happy": 22, "excited": 13, "surprise": 9},
        ),
    ],
)  # fmt: skip
def test_every_wxr_version_and_namespace_is_read(runner, client, export, version, article, counts):
    result = import_wordpress(runner, EXPORTS / export)

    assert result.exit_code == 0, result.output
    assert f"WordPress export (WXR {version}):" in result.output
    assert shown(client, article) == counts


@pytest.mark.parametrize("dry_run", [False, True])
def test_two_posts_at_one_address_are_refused_and_nothing_is_written(runner, redis_client, dry_run):
    # With /%postname%/ permalinks a page and a post may both have the slug "about".
    export = EXPORTS / "fieldnotes-postname.WordPress.2026-05-30.xml"

    result = import_wordpress(runner, export, *(["--dry-run"] if dry_run else []))

    assert result.exit_code == 1
    assert f'{BLOG}/about/: page 2 "About" and post 63 "About"' in result.output
    assert "nothing was imported" in result.output
    assert "would import" not in result.output and "Counts changed" not in result.output
    assert redis_client.keys("rx:{blog}:*") == []


def test_a_dry_run_shows_the_import_and_writes_nothing(runner, redis_client):
    result = import_wordpress(runner, FIELD_NOTES, "--dry-run")

    assert result.exit_code == 0, result.output
    assert (
        f"would import {BLOG}/2026/03/spring-walk/ (Spring walk along the dunes): "
        "happy 41, sad 2, excited 17, sleepy 3"
    ) in result.output
    assert "11 with reactions, 183 reactions." in result.output
    assert "Counts changed" not in result.output
    assert redis_client.keys("rx:{blog}:*") == []


def test_a_newer_export_adds_only_what_changed_since(runner, client, store):
    first = import_wordpress(runner, FIELD_NOTES)
    again = import_wordpress(runner, FIELD_NOTES)
    # A reader reacts on the new widget before the owner's last export from WordPress.
    spring_walk = f"{BLOG}/2026/03/spring-walk/"
    store.set_reaction(store.get_site("blog"), spring_walk, store.reader_hash("blog", "r"), "happy")

    later = import_wordpress(runner, FIELD_NOTES_LATER)

    assert "Counts changed by +183" in first.output
    assert "Counts changed by +0" in again.output
    # 201 in the newer file: 3 + 1 more on two posts, a new post (8), the draft published (5).
    assert "Counts changed by +18" in later.output, later.output
    assert shown(client, spring_walk) == {"happy": 45, "sad": 2, "excited": 18, "sleepy": 3}
    assert shown(client, f"{BLOG}/2026/06/storm-notes/") == {"surprise": 5}
    assert shown(client, f"{BLOG}/2026/06/first-swim-of-the-year/") == {"happy": 6, "excited": 2}
    assert shown(client, f"{BLOG}/?p=48") == {}
    (site_stats,) = store.site_stats([store.get_site("blog")])
    assert site_stats.total == 202 and site_stats.articles == 13


# The like/dislike counter (post meta twp_be_like_count, twp_be_dislike_like_count) of the
# posts that have one, as the `thumbs` set counts them after the import.
FIELD_NOTES_THUMBS = {
    f"{BLOG}/2026/03/spring-walk/": {"like": 23, "dislike": 2},
    f"{BLOG}/2026/04/rain-again/": {},  # liked once, then taken back: a like count of 0
    f"{BLOG}/2026/04/tom-jerry-and-the-cat-flap/": {"dislike": 3},  # only dislikes
    f"{BLOG}/2026/05/notes-from-the-lighthouse/": {"like": 5},  # no six-emotion reactions
}
# The addresses the plugin keeps beside each like and dislike (and reaction) in the export.
VOTER_ADDRESSES = ("192.0.2.", "203.0.113.")


def thumbs_counts(store, article: str) -> dict[str, int]:
    return {r: n for r, n in store.counts(scope("blog", "thumbs"), article).items() if n}


def site_record(redis_client) -> Site:
    return Site.from_json("blog", redis_client.hget(SITES_KEY, "blog"))


def test_the_like_dislike_counter_comes_in_as_the_thumbs_set(runner, client, store, redis_client):
    result = import_wordpress(runner, FIELD_NOTES)

    assert result.exit_code == 0, result.output
    assert (
        "Created the reaction set 'thumbs' of site 'blog' for the like/dislike counts: "
        "\N{THUMBS UP SIGN} Like, \N{THUMBS DOWN SIGN} Dislike, shown as counts."
    ) in result.output
    assert site_record(redis_client).named_set("thumbs") == NamedSet(
        "thumbs", THUMBS_REACTIONS, "count"
    )
    assert {a: thumbs_counts(store, a) for a in FIELD_NOTES_THUMBS} == FIELD_NOTES_THUMBS
    # Counted apart: the six-emotion bar of each post is as before, and a post with likes
    # only has no article in the default set.
    spring_walk = f"{BLOG}/2026/03/spring-walk/"
    assert shown(client, spring_walk) == FIELD_NOTES_COUNTS[spring_walk]
    lighthouse = f"{BLOG}/2026/05/notes-from-the-lighthouse/"
    assert shown(client, lighthouse) == {}
    assert store.client.hexists("rx:{blog}:meta", lighthouse) is False
    (default,) = store.site_stats([site_record(redis_client)])
    (thumbs,) = store.site_stats([site_record(redis_client).for_set("thumbs")])
    assert (default.total, default.articles) == (183, 11)
    assert (thumbs.total, thumbs.articles) == (33, 4)
    (stats,) = store.article_stats(scope("blog", "thumbs"), [lighthouse])
    assert stats.title == "Notes from the lighthouse" and stats.url == lighthouse


def stored_text(redis_client) -> str:
    """Every key and value in Redis, as one text."""
    parts = []
    for key in redis_client.scan_iter(count=1000):
        kind = redis_client.type(key)
        value = {
            "string": lambda k: redis_client.get(k),
            "hash": lambda k: redis_client.hgetall(k),
            "zset": lambda k: redis_client.zrange(k, 0, -1, withscores=True),
            "list": lambda k: redis_client.lrange(k, 0, -1),
            "set": lambda k: redis_client.smembers(k),
        }[kind](key)
        parts.append(f"{key} {value}")
    return "\n".join(parts)


def test_the_voters_addresses_the_plugin_kept_are_never_stored(runner, redis_client):
    export = FIELD_NOTES.read_text()
    assert all(address in export for address in VOTER_ADDRESSES)  # the file has them

    result = import_wordpress(runner, FIELD_NOTES, "--include-private")

    assert result.exit_code == 0, result.output
    stored = stored_text(redis_client)
    assert "Spring walk along the dunes" in stored and "thumbs" in stored  # it did import
    for address in VOTER_ADDRESSES:
        assert address not in stored and address not in result.output
    assert "twp_be_ip_address" not in stored


def test_importing_again_never_counts_a_like_twice(runner, store, redis_client):
    first = import_wordpress(runner, FIELD_NOTES)
    again = import_wordpress(runner, FIELD_NOTES)
    # A reader likes a post on the new bar before the owner's last export from WordPress.
    herons = f"{BLOG}/2026/03/herons-of-the-bay/"
    thumbs = site_record(redis_client).for_set("thumbs")
    store.set_reaction(thumbs, herons, store.reader_hash("blog", "reader"), "like")

    later = import_wordpress(runner, FIELD_NOTES_LATER)

    assert "Like/dislike counts of the set 'thumbs' changed by +33." in first.output
    assert "Like/dislike counts of the set 'thumbs' changed by +0." in again.output
    assert "Created the reaction set" not in again.output + later.output
    # Two more likes on one post, and a like on the post whose like was taken back.
    assert "Like/dislike counts of the set 'thumbs' changed by +3." in later.output
    assert thumbs_counts(store, f"{BLOG}/2026/03/spring-walk/") == {"like": 25, "dislike": 2}
    assert thumbs_counts(store, f"{BLOG}/2026/04/rain-again/") == {"like": 1}
    assert thumbs_counts(store, herons) == {"like": 1}
    (stats,) = store.site_stats([thumbs])
    assert stats.total == 37
    assert len(site_record(redis_client).sets) == 1


def test_a_dry_run_says_it_would_create_the_set_and_writes_nothing(runner, redis_client):
    result = import_wordpress(runner, FIELD_NOTES, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "Would create the reaction set 'thumbs' of site 'blog'" in result.output
    assert (
        f"would import {BLOG}/2026/04/tom-jerry-and-the-cat-flap/ (Tom & Jerry and the cat "
        "flap) into the set 'thumbs': dislike 3"
    ) in result.output
    assert site_record(redis_client).sets == ()
    assert redis_client.keys("rx:{blog}:*") == []


def test_a_thumbs_set_of_the_site_is_kept_as_the_owner_made_it(runner, store, redis_client):
    # The owner added a thumbs set with a like only, a label of their own, shown in percent.
    liked = NamedSet("thumbs", (Reaction("like", "\N{HEAVY BLACK HEART}", "Love it"),), "percent")
    store.save_site(replace(site_record(redis_client), sets=(liked,)))

    result = import_wordpress(runner, FIELD_NOTES)

    assert result.exit_code == 0, result.output
    assert "Created the reaction set" not in result.output
    assert (
        f"warning: {BLOG}/2026/03/spring-walk/: the set 'thumbs' has no reaction dislike: "
        "those counts are left out"
    ) in result.output
    assert site_record(redis_client).sets == (liked,)
    assert thumbs_counts(store, f"{BLOG}/2026/03/spring-walk/") == {"like": 23}


def truncated(tmp_path, at: int) -> Path:
    """A download cut off after `at` bytes."""
    path = tmp_path / FIELD_NOTES.name
    path.write_bytes(FIELD_NOTES.read_bytes()[:at])
    return path


def renamespaced(tmp_path) -> Path:
    path = tmp_path / "renamed.xml"
    text = FIELD_NOTES.read_text().replace("wordpress.org/export/1.2/", "example.com/wxr/")
    path.write_text(text)
    return path


def empty(tmp_path) -> Path:
    path = tmp_path / "export.xml"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("make", "explanation"),
    [
        (empty, "is empty: the export did not download"),
        (lambda tmp: truncated(tmp, 30000), "the download was cut off"),
        (lambda tmp: truncated(tmp, 14518), "the download was cut off"),  # inside a CDATA
        (lambda tmp: EXPORTS / "refused/login.html", "is a web page (HTML), not a WordPress"),
        (lambda tmp: EXPORTS / "refused/posts.json", "is a JSON file, not a WordPress export"),
        (lambda tmp: EXPORTS / "refused/feed.xml", "is an RSS feed, not a WordPress export"),
        (
            lambda tmp: EXPORTS / "refused/entities.xml",
            "declares XML entities, which WordPress exports never do",
        ),
        (
            lambda tmp: EXPORTS / "refused/no-wp-namespace.xml",
            "uses wp: elements (line 33) without declaring the wp: namespace",
        ),
        (renamespaced, 'declares its wp: namespace as "http://example.com/wxr/"'),
    ],
    ids=[
        "empty", "truncated", "truncated-in-cdata", "html", "json", "rss-feed", "entities",
        "no-wp-namespace", "other-namespace",
    ],
)  # fmt: skip
def test_a_refused_file_says_what_it_is(runner, redis_client, tmp_path, make, explanation):
    result = import_wordpress(runner, make(tmp_path))

    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {make(tmp_path)} ")
    assert explanation in result.output
    assert "Error(" not in result.output and "Traceback" not in result.output
    assert redis_client.keys("rx:{blog}:*") == []


def test_an_unknown_site_is_refused(runner):
    result = runner.invoke(main, ["import", "wordpress", str(FIELD_NOTES), "--site", "nosuch"])

    assert result.exit_code == 1 and "no site 'nosuch'" in result.output
