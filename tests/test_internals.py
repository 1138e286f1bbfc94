"""The dependencies' private internals the app relies on (widget/internals.py) are still
there in the installed versions, and where one is gone the app falls back to the stock
behaviour instead of misbehaving."""

import json
import logging
import socket
import urllib.request

import pytest
import redis
from gunicorn import util
from gunicorn.http import wsgi

from tests.servers import LiveServer
from widget import internals, live
from widget.store import connection


def test_the_installed_gunicorn_still_has_what_the_patches_rely_on():
    gone = internals.gunicorn_missing()
    assert not gone, (
        f"the installed gunicorn no longer has {', '.join(gone)}: widget/internals.py's "
        "patches fall back to gunicorn's own writes; update them or drop them"
    )


def test_the_installed_gevent_loop_still_counts_its_passes():
    gevent = pytest.importorskip("gevent")
    loop = gevent.get_hub().loop
    assert not internals.missing(loop, internals.GEVENT_LOOP_CONTRACT), (
        "gevent's loop no longer counts its passes: the fairness hook in gunicorn_conf.py "
        "yields after every request instead (correct, a little more work)"
    )
    before = internals.loop_passes(loop)
    gevent.sleep(0.001)
    assert internals.loop_passes(loop) > before


def test_a_gunicorn_without_those_internals_keeps_its_own_behaviour(monkeypatch, caplog):
    class ChangedResponse(wsgi.Response):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            del self._omits_body  # as if a release renamed it

    monkeypatch.setattr(wsgi, "Response", ChangedResponse)
    original_write_error = util.write_error
    with caplog.at_level(logging.WARNING, logger="widget.internals"):
        assert internals.patch_gunicorn() is False
    assert wsgi.Response is ChangedResponse
    assert util.write_error is original_write_error
    assert "gunicorn.http.wsgi.Response._omits_body" in caplog.text


def test_missing_names_dotted_paths():
    class Thing:
        part = type("Part", (), {"inner": 1})

    assert internals.missing(Thing, ("part", "part.inner", "part.outer", "gone")) == [
        "part.outer",
        "gone",
    ]


def test_the_installed_redis_py_still_has_what_the_app_relies_on():
    gone = internals.redis_missing()
    assert not gone, (
        f"the installed redis-py or hiredis no longer has {', '.join(gone)}: "
        "widget/internals.py falls back to redis-py's own behaviour; update it or drop the use"
    )


def test_a_connected_connection_shows_its_socket_and_hiredis_reader(store):
    pool = store.client.connection_pool
    conn = pool.get_connection()
    try:
        conn.connect()
        assert isinstance(internals.connection_socket(conn), socket.socket)
        assert internals.hiredis_reader(conn) is not None
    finally:
        pool.release(conn)


def read_counts_event(stream) -> dict:
    while True:
        line = stream.readline().decode()
        if line.startswith("data:"):
            return json.loads(line[5:])


def test_without_the_hiredis_reader_votes_and_live_updates_take_redis_pys_way(
    app, store, monkeypatch
):
    """As if a redis-py release kept its parser elsewhere: the readiness check asks redis-py,
    the live listener reads each message with get_message, and nothing else changes."""
    monkeypatch.setattr(connection, "hiredis_reader", lambda conn: None)
    monkeypatch.setattr(live, "hiredis_reader", lambda conn: None)
    site = store.get_site("demo")
    with LiveServer(app) as server:
        stream = urllib.request.urlopen(
            f"{server.url}/api/v1/stream?site=demo&article=fallback", timeout=10
        )
        assert read_counts_event(stream)["total"] == 0
        for number in range(3):
            store.set_reaction(site, "fallback", f"reader-{number}", "happy")
        events = [read_counts_event(stream)]
        while events[-1]["total"] < 3:
            events.append(read_counts_event(stream))
        stream.close()
    assert store.counts("demo", "fallback") == {"happy": 3}


def test_a_cluster_node_client_without_redis_pys_node_factory_is_a_plain_client(
    redis_cluster, monkeypatch
):
    client = connection.connect(redis_cluster.url, 2.0)
    port = redis_cluster.ports[1]
    made = internals.cluster_node_client(client, "127.0.0.1", port)
    assert made.ping() and made.connection_pool.connection_kwargs["port"] == port
    monkeypatch.setattr(internals, "NODES_MANAGER_CONTRACT", ("no_such_factory",))
    plain = internals.cluster_node_client(client, "127.0.0.1", port)
    assert type(plain) is redis.Redis and plain.ping()
    assert plain.connection_pool.connection_kwargs["socket_timeout"] == 2.0
    assert internals.cluster_socket_timeout(client) == 2.0
    client.close()


def test_a_worker_that_does_not_say_whether_it_stops_keeps_its_streams():
    class Stopping:
        alive = False

    assert internals.worker_stopping(Stopping()) is True
    assert internals.worker_stopping(object()) is False  # gunicorn's own graceful timeout
