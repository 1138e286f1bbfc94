"""Bodies and addresses built to break the server: each gets a clear 4xx JSON answer, and
nothing is stored."""

from __future__ import annotations

import json
import socket

import pytest

from tests.servers import BROWSER_UA, Server

ORIGIN = "http://localhost"  # the test client's own origin: the demo site accepts it
VOTE = {
    "site": "demo",
    "article": "hostile",
    "reader": "reader-hostile-aaaaaaaa",
    "reaction": "happy",
}


def post_raw(client, raw: bytes):
    return client.post(
        "/api/v1/reactions",
        data=raw,
        headers={"Origin": ORIGIN, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize("where", ["the body", "a field"])
def test_a_deeply_nested_body_under_the_size_cap_gets_400(client, redis_client, where):
    nested = "[" * 968 + "]" * 968  # 1,936 bytes
    raw = (nested if where == "the body" else '{"site":"demo","article":' + nested + "}").encode()
    assert len(raw) <= client.application.config["MAX_CONTENT_LENGTH"]

    response = post_raw(client, raw)

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_field",
        "detail": "the body is nested too deeply: a vote is one flat object",
    }
    assert redis_client.keys("rx:{demo}:*") == []


@pytest.mark.parametrize("field", ["article", "title", "url"])
def test_a_lone_surrogate_in_a_text_field_gets_400(client, redis_client, field):
    text = "https://blog.example/a\ud800" if field == "url" else "a\ud800"
    # json.dumps writes the surrogate as the escape `\ud800`, as a hostile client would.
    raw = json.dumps(VOTE | {field: text}).encode()
    assert b"\\ud800" in raw

    response = post_raw(client, raw)

    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_field"
    assert body["detail"].startswith(f"'{field}' contains a lone surrogate")
    assert redis_client.keys("rx:{demo}:*") == []


def test_a_request_line_too_long_for_gunicorn_gets_json_414(tmp_path, redis_server):
    server = Server(tmp_path, REDIS_URL=redis_server.url).start()
    try:
        article = "a" * 5000  # gunicorn reads request lines of up to 4,094 bytes
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                f"GET /api/v1/reactions?site=demo&article={article} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nUser-Agent: {BROWSER_UA}\r\n\r\n".encode()
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        assert status_line.split()[1] == "414"
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "error": "uri_too_long",
            "detail": "the request line is too long: ask for fewer or shorter articles per request",
        }
    finally:
        code, output = server.stop()
    assert code == 0, output


EDGE_CASES = [
    ("article", "http://["),  # looks like a URL, is not one: kept as an id
    ("article", "a" * 512),
    ("article", "a" * 513),
    ("article", " " * 20 + "a" * 500),  # 520 as given: too long, though 500 once trimmed
    ("article", " \u3000 "),  # white space only
    ("article", "tab\there"),
    ("url", ""),
    ("url", "HTTPS://blog.example/post"),
    ("url", " https://blog.example/post"),
    ("url", "ftp://blog.example/post"),
    ("url", "https://blog.example/" + "u" * 2100),
    ("title", "t" * 1200),  # shortened to 300 when stored
    ("title", "t" * 1201),
    ("title", "a\u0085title"),  # a control character becomes a space
]


@pytest.mark.parametrize(("field", "value"), EDGE_CASES)
def test_the_openapi_document_says_which_votes_the_server_takes(client, field, value):
    from jsonschema_rs import Draft4Validator  # what schemathesis validates with

    document = client.get("/openapi.json").get_json()
    schema = document["components"]["schemas"]["Vote"]
    body = VOTE | {field: value}
    valid = Draft4Validator(schema).is_valid(body)

    response = client.post("/api/v1/reactions", json=body, headers={"Origin": ORIGIN})

    assert response.status_code == (200 if valid else 400), (valid, response.get_json())


BATCHES = [
    ["a"] * 50,
    ["a"] * 51,  # repeats count: the schema's maxItems says so
    ["a", ""],
    ["a", "   "],
    ["a", "line\nbreak"],
    ["http://[", "https://Blog.example/post#top"],
]


@pytest.mark.parametrize("articles", BATCHES)
def test_the_openapi_document_says_which_batches_the_server_reads(client, articles):
    from jsonschema_rs import Draft4Validator

    document = client.get("/openapi.json").get_json()
    (parameter,) = [
        p
        for p in document["paths"]["/api/v1/reactions/batch"]["get"]["parameters"]
        if p["name"] == "article"
    ]
    valid = Draft4Validator(parameter["schema"]).is_valid(articles)

    response = client.get(
        "/api/v1/reactions/batch",
        query_string=[("site", "demo")] + [("article", a) for a in articles],
    )

    assert response.status_code == (200 if valid else 400), (valid, response.get_json())


def test_the_openapi_document_lists_every_public_route(app, client):
    """A client generated from the document can reach everything a page may call."""
    documented = {
        (path, method.upper())
        for path, operations in client.get("/openapi.json").get_json()["paths"].items()
        for method in operations
    }
    public = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/") or rule.rule in ("/healthz", "/readyz")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert public - documented == set()
