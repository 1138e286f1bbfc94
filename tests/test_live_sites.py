"""A site's record changed by one server process (or a command) reaches every other process
at once: its cached record and its open streams, through the one pub/sub subscription."""

import json

import pytest

from tests.servers import NO_LIMITS, SECRET, wait_until
from widget import create_app
from widget.reactions import Reaction
from widget.store import Site

BLOG = Site("blog", ("https://blog.example.com",))


@pytest.fixture
def other(redis_url, app):
    """Another server process on the same Redis, listening as each worker does."""
    other = create_app({"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS)
    other.extensions["reactions_live"].start()
    wait_until(other.extensions["reactions_live"].connected.is_set)
    yield other
    other.extensions["reactions_live"].stop()


def test_a_saved_reaction_set_reaches_another_process_and_its_open_streams(store, other):
    store.save_site(BLOG)
    hub, elsewhere = other.extensions["reactions_live"], other.extensions["reactions"]
    assert elsewhere.get_site("blog").reactions == BLOG.reactions  # cached there now
    inbox = hub.open("blog", "a-post")
    try:
        retired = BLOG.reactions[4]
        changed = Site(
            "blog",
            BLOG.origins,
            (
                Reaction("happy", "😍", "Loved it"),
                *BLOG.reactions[1:4],
                Reaction("idea", "💡", "Idea"),
            ),
            retired=(retired,),
        )
        store.save_site(changed)
        event = json.loads(inbox.get(timeout=5).split("data: ", 1)[1])
        assert [(r["id"], r["emoji"], r["label"]) for r in event["reactions"]] == [
            tuple(r) for r in changed.reactions
        ]
        # Long before the few seconds a record stays cached without the subscription.
        wait_until(lambda: elsewhere.get_site("blog").reactions == changed.reactions, timeout=1)
    finally:
        hub.close("blog", "a-post", inbox)


def test_a_removed_site_is_refused_by_another_process_at_once(store, other):
    store.save_site(BLOG)
    elsewhere = other.extensions["reactions"]
    assert elsewhere.get_site("blog") is not None
    store.remove_site("blog")
    wait_until(lambda: elsewhere.get_site("blog") is None, timeout=1)
