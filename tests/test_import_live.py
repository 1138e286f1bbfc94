"""An import (or an admin's reset) run outside the server is seen at once by every one of its
processes and by every open bar, as a vote is."""

from tests.processes import ServerProcesses
from tests.servers import wait_until
from widget.store import Site, Store, connect

ORIGIN = "https://blog.example.com"


def test_an_import_and_a_reset_from_outside_reach_every_process_and_open_stream(
    tmp_path, redis_server, redis_client
):
    store = Store(connect(redis_server.url, 5.0))
    blog = store.save_site(Site("blog", (ORIGIN,)))
    server = ServerProcesses(tmp_path / "unused", redis_server.url).start()
    try:
        # Readers saw the post before the import: each process holds its counts in memory.
        assert [server.read("blog", "moved-post")["total"] for _ in range(10)] == [0] * 10
        with server.stream("blog", "moved-post") as events:
            assert next(events)["total"] == 0

            # As `reactions import wordpress` does, from its own process.
            store.import_counts(blog, "moved-post", {"happy": 5, "sad": 2}, "", "Moved post")
            assert next(events)["total"] == 7
            wait_until(
                lambda: [server.read("blog", "moved-post")["total"] for _ in range(10)] == [7] * 10,
                timeout=5,
            )

            store.reset_article(blog, "moved-post")
            assert next(events)["total"] == 0
            wait_until(
                lambda: [server.read("blog", "moved-post")["total"] for _ in range(10)] == [0] * 10,
                timeout=5,
            )
    finally:
        code, output = server.stop()
        store.client.close()
    assert code == 0, output
