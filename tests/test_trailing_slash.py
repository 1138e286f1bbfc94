"""Addresses typed with or without a trailing slash reach their page."""

import pytest


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("GET", "/demo/", "/demo"),
        ("HEAD", "/demo/", "/demo"),
        ("GET", "/demo/blog/", "/demo/blog"),
        ("GET", "/demo/night-trains/?ref=mail&x=%20", "/demo/night-trains?ref=mail&x=%20"),
        ("GET", "/admin/login/", "/admin/login"),
        ("GET", "/embed.js/", "/embed.js"),
        # Werkzeug's own rule: a branch is reached with its slash.
        ("GET", "/admin", "http://localhost/admin/"),
    ],
)
def test_a_page_asked_for_with_the_other_slash_redirects(client, method, path, location):
    response = client.open(path, method=method)
    assert response.status_code == 308
    assert response.headers["Location"] == location
    assert client.open(response.headers["Location"], method=method).status_code in (200, 302)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere/", 404),
        ("GET", "/demo/no-such-article", 404),
        # A vote is never redirected: the client must use the address it was given.
        ("POST", "/api/v1/reactions/", 404),
    ],
)
def test_an_address_that_exists_neither_way_is_not_found(client, method, path, status):
    assert client.open(path, method=method).status_code == status
