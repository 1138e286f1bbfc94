"""The rules of security.py and reactions.py at their edges, each case written where a
mutation test (`mutmut run`, see pyproject's [tool.mutmut]) showed that a changed rule still
passed. Fast on purpose: pure rules, and the app's functions on the real embedded Redis.

Mutants left alive on purpose, because they change nothing a caller can see:
- `percentages`: zip(..., strict=True) made strict=False, strict=None or dropped; the two
  lists zipped are built from the same counts, so they always have the same length.
- A header name respelled in another case ("origin", "VARY", "user-agent", ...): werkzeug's
  headers are case-insensitive, as HTTP's are.
- A default that behaves as the original one: `headers.get("Origin", "XXXX")` is not an
  http(s) origin either; `headers.get("User-Agent", None)` in `is_automated` is as empty as
  ""; `session.get("csrf", None)` in `check_csrf` is as missing as ""; `item.get("id",
  "XXXX")` in `parse_reaction_set` is not a valid id either; `secrets.token_urlsafe(None)`
  is its default of 32 bytes, and 33 bytes only a longer token.
- Defaults that cannot be reached: `page_url(public) or ("XXXX",)` in `is_own_origin` (the
  public URL is validated at start-up, so it always parses), `page_url(url) or (None, "XXXX")`
  in `allowed_page_url` (with no origin the site allows nothing, whatever the spelling),
  `session.get("login", None or "XXXX")` in `open_session` (no login has that id either).
- `is_own_origin` taking the name before the last ":" even without a port: a Host without a
  port is matched whole by the test before it, so the name is never consulted then.
- `address_fingerprint` and `password_tag` with another constant (a salt of `None`'s day, an
  agent part of None or "XXXX", a tag one character longer, a tag of "" or "XXXX" when no
  password is configured): each is one fixed value per process and day, compared only with
  itself, so what a caller sees is unchanged.
- `check_csrf` with "XXXX" for a missing form field or session token: it differs only when
  the other side is that very literal, which no session is given (tokens are 43 characters)
  and a test could only send by copying the mutant.
"""

import hmac
import time

import pytest
from flask import request, session
from flask.sessions import NullSession
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from tests.servers import BROWSER_UA, NO_LIMITS, SECRET
from widget import create_app, security
from widget.reactions import (
    DEFAULT_REACTIONS,
    MAX_ARTICLE_LENGTH,
    MAX_READER_LENGTH,
    MAX_SITE_LENGTH,
    MAX_TITLE_LENGTH,
    MAX_URL_LENGTH,
    MIN_READER_LENGTH,
    CsrfFailed,
    InvalidField,
    OriginNotAllowed,
    Reaction,
    UnsupportedMediaType,
    normalize_article,
    parse_reaction_set,
    percentages,
    validate_choice,
    validate_origin,
    validate_reader,
    validate_site,
    validate_title,
    validate_url,
)
from widget.store import SELF_ORIGIN, Site, utc_day

# Pure rules: the exact refusal a client reads ------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "value", "detail"),
    [
        (validate_site, 5, "'site' must be a string"),
        (validate_site, "x" * 65, "'site' is longer than 64 characters"),
        (validate_site, "a\x00", "'site' contains control characters"),
        (validate_site, "Blog", "'site' must be 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"),
        (normalize_article, None, "'article' must be a string"),
        (normalize_article, "  ", "'article' must not be empty"),
        (normalize_article, "x" * 513, "'article' is longer than 512 characters"),
        (validate_reader, ["r"], "'reader' must be a string"),
        (validate_reader, "r" * 15, "'reader' must be 16-128 characters of A-Z, a-z, 0-9, '-' or '_'"),
        (validate_reader, "r" * 15 + "!", "'reader' must be 16-128 characters of A-Z, a-z, 0-9, '-' or '_'"),
        (validate_title, 5, "'title' must be a string"),
        (validate_title, "t" * 1201, "'title' is longer than 1200 characters"),
        (validate_url, 5, "'url' must be a string"),
        (validate_url, "javascript:alert(1)", "'url' must be an http(s) URL, or empty"),
        (validate_url, "  https://blog.example.com/p", "'url' must be an http(s) URL, or empty"),
        (validate_origin, "ftp://blog.example.com", "origin 'ftp://blog.example.com' must look like https://blog.example.com"),
        (validate_origin, "https://blog.example.com?x", "origin 'https://blog.example.com?x' must not have a path, query or fragment"),
        (validate_origin, "https://blog.example.com#x", "origin 'https://blog.example.com#x' must not have a path, query or fragment"),
        (normalize_article, "a\ud800", "'article' contains a lone surrogate (\\ud800-\\udfff), which is not text"),
        (validate_title, "a\udfff", "'title' contains a lone surrogate (\\ud800-\\udfff), which is not text"),
    ],
)  # fmt: skip
def test_each_refusal_says_which_field_and_why(rule, value, detail):
    with pytest.raises(InvalidField) as refused:
        rule(value)
    assert refused.value.detail == detail
    assert str(refused.value) == detail
    assert (refused.value.status, refused.value.code) == (400, "invalid_field")


def test_a_reaction_outside_the_set_is_refused_naming_the_set():
    two = DEFAULT_REACTIONS[:2]
    with pytest.raises(InvalidField) as refused:
        validate_choice("angry", two)
    assert refused.value.detail == "'reaction' must be one of happy, sad, or null"


@pytest.mark.parametrize(
    ("rule", "longest"),
    [
        (validate_site, "s" * MAX_SITE_LENGTH),
        (normalize_article, "a" * MAX_ARTICLE_LENGTH),
        (validate_reader, "r" * MAX_READER_LENGTH),
        (validate_reader, "r" * MIN_READER_LENGTH),
        (validate_url, "https://x.org/" + "u" * (MAX_URL_LENGTH - 14)),
    ],
)
def test_a_value_of_exactly_the_limit_is_accepted(rule, longest):
    assert rule(longest) == longest


def test_an_article_id_is_measured_as_given_and_a_url_that_does_not_parse_stays_as_it_is():
    # As the API's schema states it: the length of what the page sent, fragment included.
    fits = "https://blog.example.com/" + "p" * (MAX_ARTICLE_LENGTH - 27)
    assert normalize_article(fits + "#f") == fits
    with pytest.raises(InvalidField):
        normalize_article(fits + "#ff")
    assert normalize_article("https://[::1/post") == "https://[::1/post"


def test_a_title_up_to_four_times_the_shown_length_is_cut_not_refused():
    assert validate_title("t" * MAX_TITLE_LENGTH * 4) == "t" * MAX_TITLE_LENGTH
    assert validate_title(None) == ""
    assert validate_title("a\u2028b\x00c") == "a b c"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, ""), ("", ""), ("HTTP://blog.example.com/", "HTTP://blog.example.com/")],
)  # fmt: skip
def test_a_page_url_is_an_http_url_or_nothing(raw, expected):
    assert validate_url(raw) == expected


def test_percentages_give_the_missing_point_to_the_largest_remainder_not_the_largest_count():
    # 4/7 = 57.14 %, 3/7 = 42.86 %: the remainder, not the share, decides.
    assert percentages([4, 3, 0, 0, 0, 0]) == [57, 43, 0, 0, 0, 0]


def test_a_reaction_set_is_read_from_its_stored_form():
    stored = [
        {"id": "clap", "emoji": "👏", "label": "Clap"},
        {"id": "wow", "emoji": "😮", "label": "Wow"},
    ]
    reactions = parse_reaction_set(stored)
    assert reactions == (Reaction("clap", "👏", "Clap"), Reaction("wow", "😮", "Wow"))
    assert [r.as_dict() for r in reactions] == stored


@pytest.mark.parametrize("bad", [{"id": "Clap"}, {"id": ""}, {}, {"id": "9lives"}])
def test_a_stored_reaction_set_with_a_bad_id_is_refused(bad):
    item = {"emoji": "👏", "label": "Clap"} | bad
    with pytest.raises(InvalidField) as refused:
        parse_reaction_set([{"id": "ok", "emoji": "✔", "label": "OK"}, item])
    assert refused.value.detail == f"reaction id {bad.get('id')!r} is not valid"


# Requests: origins, content type, CORS headers ----------------------------------------------

BLOG = "https://blog.example.com"


@pytest.fixture
def app(redis_server, redis_client):
    app = create_app({"REDIS_URL": redis_server.url, "REACTIONS_SECRET_KEY": SECRET} | NO_LIMITS)
    yield app
    app.extensions["reactions_live"].stop()


@pytest.mark.parametrize(
    ("base_url", "origin", "own"),
    [("http://localhost:8000", "http://localhost:8000", True),  # an allowed host, any port
     ("http://127.0.0.1:8000", "http://127.0.0.1:8000", True),
     ("http://localhost:8000", "https://localhost:8000", False),  # not the request's scheme
     ("http://localhost:8000", "http://localhost:9000", False),  # nor its port
     ("https://reactions.example:8443", "https://reactions.example:8443", False)],  # not allowed
)  # fmt: skip
def test_the_own_origin_is_the_scheme_and_an_allowed_host_the_request_named(
    app, base_url, origin, own
):
    with app.test_request_context("/", base_url=base_url):
        assert security.is_own_origin(request, origin) is own


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [("application/json", True), ("application/json; charset=utf-8", True),
     ("text/plain", False), ("application/x-www-form-urlencoded", False), (None, False)],
)  # fmt: skip
def test_only_json_writes_are_accepted(app, content_type, accepted):
    headers = {"Content-Type": content_type} if content_type else {}
    with app.test_request_context("/", method="POST", data="{}", headers=headers):
        if accepted:
            assert security.require_json(request) is None
            return
        with pytest.raises(UnsupportedMediaType) as refused:
            security.require_json(request)
    assert refused.value.detail == "send the body as Content-Type: application/json"
    assert (refused.value.status, refused.value.code) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("origin", "detail"),
    [
        (None, "writes must come from a browser page (Origin header)"),
        ("", "writes must come from a browser page (Origin header)"),
        ("https://evil.example", "origin https://evil.example is not allowed for site 'blog'; its owner can allow it with: reactions sites origins add blog https://evil.example"),
    ],
)  # fmt: skip
def test_a_refused_origin_is_told_why_and_how_to_allow_it(app, origin, detail):
    headers = {"Origin": origin} if origin is not None else {}
    with app.test_request_context("/", headers=headers), pytest.raises(OriginNotAllowed) as refused:
        security.require_allowed_origin(request, Site("blog", (BLOG, SELF_ORIGIN)))
    assert refused.value.detail == detail
    assert (refused.value.status, refused.value.code) == (403, "origin_not_allowed")


@pytest.mark.parametrize("origin", [BLOG, "http://localhost"])
def test_an_allowed_origin_is_returned_for_the_answer(app, origin):
    with app.test_request_context("/", headers={"Origin": origin}):
        assert security.require_allowed_origin(request, Site("blog", (BLOG, SELF_ORIGIN))) == origin


@pytest.mark.parametrize(
    ("origin", "readable"),
    [(BLOG, BLOG), ("http://localhost:8000", "http://localhost:8000"), ("null", None),
     ("", None), ("file://", None), ("chrome-extension://abc", None), (None, None)],
)  # fmt: skip
def test_only_an_http_origin_may_be_told_it_can_read(app, origin, readable):
    headers = {"Origin": origin} if origin is not None else {}
    with app.test_request_context("/", headers=headers):
        assert security.readable_origin(request) == readable


@pytest.mark.parametrize(
    ("agent", "automated"),
    [(BROWSER_UA, False), ("", True), (None, True), ("Googlebot/2.1", True),
     ("Mozilla/5.0 (compatible; YandexBot/3.0)", True), ("python-requests/2.32", True)],
)  # fmt: skip
def test_agents_that_say_they_are_automated_are_recognized(app, agent, automated):
    headers = {"User-Agent": agent} if agent is not None else {}
    with app.test_request_context("/", headers=headers):
        assert security.is_automated(request) is automated


@pytest.mark.parametrize(
    ("vary", "expected"), [(None, ["Origin"]), ("Accept-Encoding", ["Accept-Encoding, Origin"])]
)
def test_a_write_answer_names_the_exact_origin_and_varies_by_it(vary, expected):
    response = Response("{}")
    if vary:
        response.headers["Vary"] = vary
    answered = security.allow_write_origin(response, BLOG)
    assert answered is response
    assert response.headers.getlist("Access-Control-Allow-Origin") == [BLOG]
    assert response.headers.getlist("Vary") == expected
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_preflight_allows_json_posts_for_an_http_origin(app):
    with app.test_request_context("/", method="OPTIONS", headers={"Origin": BLOG}):
        response = security.preflight(request)
    assert response.status_code == 204
    assert dict(response.headers) | {"Content-Type": "", "Content-Length": ""} == {
        "Access-Control-Allow-Origin": BLOG,
        "Access-Control-Allow-Methods": "GET, POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "7200",
        "Vary": "Origin",
        "Content-Type": "",
        "Content-Length": "",
    }


@pytest.mark.parametrize("origin", ["null", None])
def test_a_preflight_without_an_http_origin_allows_nothing(app, origin):
    headers = {"Origin": origin} if origin else {}
    with app.test_request_context("/", method="OPTIONS", headers=headers):
        response = security.preflight(request)
    assert response.status_code == 204
    assert response.headers.getlist("Vary") == ["Origin"]
    assert not [name for name, _ in response.headers.items() if name.startswith("Access-")]


# Client fingerprints --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("192.0.2.1", "192.0.2.1"), (" 192.0.2.1 ", "192.0.2.1"), ("::ffff:192.0.2.1", "192.0.2.1"),
     ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"), ("[2001:db8::1]", "2001:db8::1"),
     ("fe80::1%eth0", "fe80::1"), ("unix-socket", "unix-socket"), ("", "")],
)  # fmt: skip
def test_an_address_has_one_spelling(app, spelling, canonical):
    assert security.canonical_address(spelling) == canonical
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": spelling}):
        assert security.client_address(request) == canonical


def test_a_fingerprint_depends_on_address_agent_and_the_day_salt(app):
    store = app.extensions["reactions"]

    def fingerprint_of(address, agent):
        environ = {"REMOTE_ADDR": address}
        headers = {"User-Agent": agent} if agent is not None else {}
        with app.test_request_context("/", environ_base=environ, headers=headers):
            return security.client_fingerprint(store, request)

    first = fingerprint_of("192.0.2.1", BROWSER_UA)
    # No User-Agent header at all is the same client as an empty one.
    assert fingerprint_of("192.0.2.1", None) == fingerprint_of("192.0.2.1", "")
    assert len(first) == 24 and int(first, 16) >= 0
    assert fingerprint_of("::ffff:192.0.2.1", BROWSER_UA) == first
    assert fingerprint_of("192.0.2.2", BROWSER_UA) != first
    assert fingerprint_of("192.0.2.1", BROWSER_UA + " Edg/156") != first
    # The day's salt keys it: the same client under another salt is another fingerprint.
    salt = store.daily_salt(utc_day(time.time()))
    assert security.fingerprint(salt, "192.0.2.1", BROWSER_UA) == first
    assert security.fingerprint(salt + "x", "192.0.2.1", BROWSER_UA) != first
    # Address and agent are kept apart: moving a character across the boundary changes it.
    assert security.fingerprint(salt, "192.0.2.1", "x") != security.fingerprint(
        salt, "192.0.2.1x", ""
    )


# Admin: CSRF, passwords, the session ----------------------------------------------------------


def test_a_form_token_is_made_once_per_session_and_checked(app):
    with app.test_request_context("/admin/"):
        token = security.csrf_token()
        assert security.csrf_token() == token and len(token) >= 43
        assert session["csrf"] == token
    with app.test_request_context("/admin/", method="POST", data={"csrf_token": token}):
        session["csrf"] = token
        assert security.check_csrf(request) is None


@pytest.mark.parametrize(
    ("sent", "expected"),
    [("", ""), ("stale", "fresh"), ("", "fresh"), ("x", ""), (None, "fresh"), (None, "")],
)
def test_a_missing_or_stale_form_token_is_refused(app, sent, expected):
    form = {"csrf_token": sent} if sent is not None else {"other": "field"}
    with app.test_request_context("/admin/", method="POST", data=form):
        if expected:
            session["csrf"] = expected
        with pytest.raises(CsrfFailed) as refused:
            security.check_csrf(request)
    assert refused.value.detail == (
        "the form's CSRF token is missing or stale; reload the page and retry"
    )
    assert (refused.value.status, refused.value.code) == (400, "csrf_failed")


@pytest.mark.parametrize(
    ("password", "configured", "stored", "matches"),
    [("pw-one", "pw-one", None, True), ("pw-two", "pw-one", None, False),
     ("pw-two", "pw-one", "hash of pw-two", False), ("pw-two", "", "hash of pw-two", True),
     ("pw-one", "", "hash of pw-two", False), ("pw-one", "", None, False), ("", "", None, False)],
)  # fmt: skip
def test_the_configured_password_wins_over_the_stored_hash(password, configured, stored, matches):
    stored_hash = security.hash_password("pw-two") if stored else None
    assert security.password_matches(password, configured, stored_hash) is matches


def test_a_stored_password_is_a_salted_hash():
    first, second = security.hash_password("secret"), security.hash_password("secret")
    assert first != second and "secret" not in first
    assert check_password_hash(first, "secret") and not check_password_hash(first, "other")


def test_only_admin_pages_have_a_session_signed_with_the_shared_secret(app):
    store = app.extensions["reactions"]
    with app.test_request_context("/api/v1/reactions"):
        assert isinstance(session, NullSession)
    assert not app.secret_key
    with app.test_request_context("/admin/"):
        assert not isinstance(session, NullSession)
    assert app.secret_key == store.keyed_hash("admin-session")
    assert hmac.compare_digest(app.secret_key, store.keyed_hash("admin-session"))


def test_without_redis_an_admin_page_has_no_session_rather_than_an_error(tmp_path):
    # No configured secret: the shared one is in Redis, which does not answer.
    app = create_app({"REDIS_URL": f"unix://{tmp_path}/none.sock"})
    with app.test_request_context("/admin/"):
        assert isinstance(session, NullSession)
    assert not app.secret_key


@pytest.mark.parametrize(
    ("configured", "base_url", "secure"),
    [(False, "http://localhost", False), (False, "https://reactions.example", True),
     (True, "http://localhost", True)],
)  # fmt: skip
def test_the_session_cookie_is_secure_over_https_or_when_configured(
    redis_server, redis_client, configured, base_url, secure
):
    app = create_app(
        {"REDIS_URL": redis_server.url, "REACTIONS_SECRET_KEY": SECRET,
         "SESSION_COOKIE_SECURE": configured}
    )  # fmt: skip
    with app.test_request_context("/admin/", base_url=base_url):
        assert app.session_interface.get_cookie_secure(app) is secure


def test_an_address_that_is_no_address_is_not_the_servers_own_machine(app):
    """Only the loopback may log in past the global lock-out (see test_login_lockout.py)."""
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "not-an-address"}):
        assert security.is_loopback(request) is False
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "::1"}):
        assert security.is_loopback(request) is True
