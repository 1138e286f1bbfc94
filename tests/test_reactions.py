"""The pure rules: percentages, ids, validation and the encoded bodies, without Redis."""

import json
import random

import pytest

from widget.api import encode, encode_summary
from widget.reactions import (
    DEFAULT_REACTIONS,
    InvalidField,
    Reaction,
    Vote,
    normalize_article,
    parse_vote,
    percentages,
    validate_choice,
    validate_origin,
    validate_reader,
    validate_site,
    validate_title,
)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]),
        ([1, 1, 1, 0, 0, 0], [34, 33, 33, 0, 0, 0]),
        ([1, 0, 0, 0, 0, 0], [100, 0, 0, 0, 0, 0]),
        ([2, 1, 0, 0, 0, 0], [67, 33, 0, 0, 0, 0]),
        ([1, 1, 1, 1, 1, 1], [17, 17, 17, 17, 16, 16]),
        ([0, 0, 1, 1, 1, 0], [0, 0, 34, 33, 33, 0]),
        ([2, 1, 1, 0, 0, 1], [40, 20, 20, 0, 0, 20]),
    ],
)
def test_percentages_by_largest_remainder(counts, expected):
    assert percentages(counts) == expected


def test_percentages_always_add_up_to_100():
    rng = random.Random(7)
    for _ in range(2000):
        counts = [rng.choice([0, 0, 1, 2, 3, 7, 100, 12345]) for _ in range(6)]
        shares = percentages(counts)
        assert sum(shares) == (100 if sum(counts) else 0)
        assert all(0 <= share <= 100 for share in shares)


def reference_summary(site, article, reaction_set, counts) -> dict:
    """The public body of one article, written plainly: what api.encode_summary must encode."""
    ordered = [max(0, int(counts.get(r.id, 0))) for r in reaction_set]
    return {
        "site": site,
        "article": article,
        "total": sum(ordered),
        "reactions": [
            {"id": r.id, "emoji": r.emoji, "label": r.label, "count": c, "percent": p}
            for r, c, p in zip(reaction_set, ordered, percentages(ordered), strict=True)
        ],
    }


def test_summary_lists_the_site_order_with_emoji_and_labels():
    counts = {"sad": 1, "happy": 3, "retired": 9}
    body = json.loads(encode_summary("demo", "post", DEFAULT_REACTIONS, counts))
    assert [r["id"] for r in body["reactions"]] == [
        "happy", "sad", "excited", "sleepy", "angry", "surprise",
    ]  # fmt: skip
    assert body["total"] == 4
    assert body["reactions"][0] == {
        "id": "happy", "emoji": "😄", "label": "Happy", "count": 3, "percent": 75,
    }  # fmt: skip


def test_the_encoded_summary_is_byte_for_byte_the_summary_encoded():
    """api.encode_summary writes the answers of reads and votes from pre-encoded pieces; it
    must stay exactly the plainly written body encoded, plus the extra members, whatever the
    reactions and article ids hold."""
    rng = random.Random(11)
    odd = Reaction("q", 'say "hi" \\ 🎉 %d', "Zürich\n<b> 100%s")
    reaction_sets = [DEFAULT_REACTIONS, (odd, *DEFAULT_REACTIONS[:2]), (Reaction("x", "✔", "X"),)]
    articles = ["post", "https://blog.example/ü?", 'a "quoted" \\ path', "日本語/記事", "50%-off"]
    for _ in range(500):
        reactions = rng.choice(reaction_sets)
        ids = [r.id for r in reactions] + ["retired"]
        counts = {i: rng.choice([0, 1, 2, 7, 12345, -3]) for i in ids if rng.random() < 0.7}
        article = rng.choice(articles)
        mine = rng.choice([None, reactions[0].id])
        body = reference_summary("demo", article, reactions, counts)
        expected = body | {"mine": mine, "counted": True}
        extra = b',"mine":%s,"counted":true' % encode(mine)
        assert encode_summary("demo", article, reactions, counts, extra) == encode(expected)
        assert encode_summary("demo", article, reactions, counts) == encode(body)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("my-post", "my-post"),
        ("  my-post ", "my-post"),
        ("https://Blog.Example.com/2026/post#comments", "https://blog.example.com/2026/post"),
        # WordPress's plain permalinks: the query is the post.
        ("https://blog.example.com/?p=123#respond", "https://blog.example.com/?p=123"),
        ("https://blog.example.com/?p=123", "https://blog.example.com/?p=123"),
        ("HTTP://example.com", "http://example.com/"),
        ("/2026/11/post/", "/2026/11/post/"),
    ],
)  # fmt: skip
def test_article_ids_are_normalized(raw, expected):
    assert normalize_article(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", None, 42, "a\x00b", "line\nbreak", "x" * 513])
def test_bad_article_ids_are_refused(raw):
    with pytest.raises(InvalidField):
        normalize_article(raw)


@pytest.mark.parametrize("raw", ["", "Demo", "-x", "a b", "x" * 65, None, "é"])
def test_bad_site_names_are_refused(raw):
    with pytest.raises(InvalidField):
        validate_site(raw)


@pytest.mark.parametrize("raw", ["short", "has space in it 123", "x" * 129, 5, None])
def test_bad_reader_tokens_are_refused(raw):
    with pytest.raises(InvalidField):
        validate_reader(raw)


def test_choice_is_a_known_reaction_or_null():
    assert validate_choice("happy", DEFAULT_REACTIONS) == "happy"
    assert validate_choice(None, DEFAULT_REACTIONS) is None
    for bad in ("joy", "", 1, ["happy"], {"id": "happy"}):
        with pytest.raises(InvalidField):
            validate_choice(bad, DEFAULT_REACTIONS)


def test_titles_are_display_text():
    assert validate_title("  A\ttitle\n with  space ") == "A title with space"
    assert len(validate_title("x" * 1000)) == 300
    with pytest.raises(InvalidField):
        validate_title("x" * 5000)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("https://Blog.Example.com", "https://blog.example.com"), ("http://localhost:8000/", "http://localhost:8000")],
)  # fmt: skip
def test_origins_are_normalized(raw, expected):
    assert validate_origin(raw) == expected


@pytest.mark.parametrize("raw", ["blog.example.com", "ftp://x.org", "https://x.org/path", ""])
def test_bad_origins_are_refused(raw):
    with pytest.raises(InvalidField):
        validate_origin(raw)


READER = "reader-aaaaaaaaaaaa"


def test_a_vote_body_becomes_a_checked_vote():
    body = {
        "site": "demo",
        "article": " https://Blog.Example/post?p=3#comments ",
        "reader": READER,
        "reaction": "sad",
        "url": "https://blog.example/post?p=3",
        "title": "  A\ttitle\n",
    }
    assert parse_vote(body, DEFAULT_REACTIONS) == Vote(
        "https://blog.example/post?p=3", READER, "sad", "https://blog.example/post?p=3", "A title"
    )
    taken_back = parse_vote({"article": "a", "reader": READER, "reaction": None}, DEFAULT_REACTIONS)
    assert taken_back == Vote("a", READER, None, "", "")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"article": ""}, "article"),
        ({"reader": "short"}, "reader"),
        ({"reaction": "love"}, "reaction"),
        ({"reaction": ["happy"]}, "reaction"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"title": 7}, "title"),
    ],
)
def test_a_vote_body_names_its_first_wrong_field(change, field):
    body = {"article": "a", "reader": READER, "reaction": "happy"} | change
    with pytest.raises(InvalidField, match=f"'{field}'"):
        parse_vote(body, DEFAULT_REACTIONS)


def test_a_vote_body_without_a_reaction_is_refused_rather_than_taken_as_null():
    with pytest.raises(InvalidField, match="'reaction' is required"):
        parse_vote({"article": "a", "reader": READER}, DEFAULT_REACTIONS)
