"""The dependencies' private internals the app relies on (widget/internals.py) are still
there in the installed versions, and where one is gone the app falls back to the stock
behaviour instead of misbehaving."""

import logging

import pytest
from gunicorn import util
from gunicorn.http import wsgi

from widget import internals


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
