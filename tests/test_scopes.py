"""A site's named reaction set is counted in a keyspace of its own inside the site's slot."""

import pytest
from redis.crc import key_slot

from widget.reactions import THUMBS_REACTIONS, InvalidField
from widget.store import (
    NamedSet,
    Site,
    channel,
    client_rate_key,
    counts_key,
    day_key,
    index_key,
    own_key,
    parse_channel,
    readers_key,
    scope,
    split_scope,
)

THUMBS = scope("blog", "thumbs")


def test_a_named_set_has_keys_of_its_own_in_the_slot_of_its_site():
    for key_of in (counts_key, readers_key):
        assert key_of(THUMBS, "post") != key_of("blog", "post")
        assert key_slot(key_of(THUMBS, "post").encode()) == key_slot(b"{blog}")
    assert index_key(THUMBS, "like") != index_key("blog", "like")
    assert day_key(THUMBS, "2026-12-02") != day_key("blog", "2026-12-02")
    assert own_key(THUMBS, "ab" * 8) != own_key("blog", "ab" * 8)


def test_the_default_sets_keys_are_those_it_always_had():
    assert scope("blog") == "blog"
    assert counts_key("blog", "post") == "rx:{blog}:a:post"
    assert channel("blog", "post") == "rx:{blog}:ch:post"


def test_the_rate_limits_are_the_sites_whatever_the_set():
    assert client_rate_key(THUMBS, "c", 7) == client_rate_key("blog", "c", 7)


@pytest.mark.parametrize("name", ["blog", THUMBS])
@pytest.mark.parametrize("article", ["post", "https://blog.example/a:ch:b?p=1", ""])
def test_a_channel_names_its_scope_and_article(name, article):
    assert parse_channel(channel(name, article)) == (name, article)
    assert split_scope(name) == (("blog", "thumbs") if name == THUMBS else ("blog", ""))


def test_a_sites_named_sets_are_kept_in_its_record():
    site = Site(
        "blog", ("https://blog.example",), sets=(NamedSet("thumbs", THUMBS_REACTIONS, "count"),)
    )
    again = Site.from_json("blog", site.to_json())
    assert again == site
    assert again.named_set("thumbs").style == "count"
    assert again.named_set("") is None and again.named_set("stars") is None


def test_a_site_as_its_set_is_counted_is_named_by_the_sets_scope():
    site = Site("blog", ("https://blog.example",), sets=(NamedSet("thumbs", THUMBS_REACTIONS),))
    thumbs = site.for_set("thumbs")
    assert (thumbs.name, thumbs.reactions, thumbs.origins) == (
        THUMBS,
        THUMBS_REACTIONS,
        site.origins,
    )
    assert thumbs.vote_keys[0] == index_key(THUMBS)
    assert site.for_set("") is site
    with pytest.raises(InvalidField, match="no reaction set 'stars'"):
        site.for_set("stars")
