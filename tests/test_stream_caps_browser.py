"""A reader whose live streams are refused (429: too many open from their address) still
sees the counts change: the widget falls back to polling."""

from __future__ import annotations

from tests.servers import NO_LIMITS, SECRET, LiveServer, host_page
from tests.test_browser import wait_for_bar, wait_for_percents
from widget import create_app


def test_a_reader_refused_a_stream_polls_and_sees_other_votes(page, redis_url, redis_client):
    app = create_app(
        {"REDIS_URL": redis_url, "REACTIONS_SECRET_KEY": SECRET, "REACTIONS_STREAMS_PER_CLIENT": 0}
        | NO_LIMITS
    )
    store = app.extensions["reactions"]
    streams = []
    page.on("response", lambda r: "/api/v1/stream" in r.url and streams.append(r.status))
    try:
        with (
            LiveServer(app) as server,
            host_page(
                '<title>Capped</title><emoji-reactions data-article="capped"></emoji-reactions>'
                f'<script src="{server.url}/embed.js" data-site="demo" data-poll="2" async></script>'
            ) as url,
        ):
            page.goto(url)
            wait_for_bar(page)
            demo = store.get_site("demo")
            store.set_reaction(demo, "capped", store.reader_hash("demo", "another-reader"), "sad")

            wait_for_percents(page, ["0%", "100%", "0%", "0%", "0%", "0%"])
    finally:
        app.extensions["reactions_live"].stop()

    assert streams and set(streams) == {429}
