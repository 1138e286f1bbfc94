"""REACTIONS_PUBLIC_URL: the address every embed snippet names, in the CLI and the admin."""

import html
import re

import pytest
from click.testing import CliRunner

from tests.servers import admin_app
from widget import config
from widget.cli import main
from widget.store import Site

PASSWORD = "correct horse battery"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("https://reactions.example.com", "https://reactions.example.com"),
        ("https://Reactions.Example.com/", "https://reactions.example.com"),
        ("http://203.0.113.7:8000", "http://203.0.113.7:8000"),
        ("https://example.com/reactions/", "https://example.com/reactions"),
        ("", ""),
    ],
)
def test_public_url_is_kept_without_its_trailing_slash(value, stored):
    assert config.load({"REACTIONS_PUBLIC_URL": value})["REACTIONS_PUBLIC_URL"] == stored


@pytest.mark.parametrize(
    "value",
    [
        "reactions.example.com",
        "/reactions",
        "ftp://reactions.example.com",
        "https://",
        "https://reactions.example.com:99999",
        "https://reactions.example.com?x=1",
        "https://reactions.example.com/#top",
        "https://user:secret@reactions.example.com",
        'https://reactions.example.com/"><script>alert(1)</script>',
        "https://reactions.example.com/a b",
    ],
)
def test_a_public_url_that_is_not_an_absolute_http_url_fails_at_start_up(value):
    result = CliRunner(env={"REACTIONS_PUBLIC_URL": value}).invoke(main, ["sites", "list"])
    assert result.exit_code == 1
    assert "REACTIONS_PUBLIC_URL must be an absolute http(s) URL" in result.output


def test_sites_add_prints_a_snippet_to_paste_when_the_public_url_is_set(redis_server, redis_client):
    env = {"REDIS_URL": redis_server.url, "REACTIONS_PUBLIC_URL": "https://example.com/rx/"}
    result = CliRunner(env=env).invoke(
        main, ["sites", "add", "blog", "--origin", "https://blog.example.com"]
    )
    assert result.exit_code == 0, result.output
    assert (
        '  <script src="https://example.com/rx/embed.js" data-site="blog" async></script>\n'
        '  <emoji-reactions data-article="ARTICLE-ID"></emoji-reactions>\n'
    ) in result.output
    assert "YOUR-REACTIONS-SERVER" not in result.output


def test_without_a_public_url_sites_add_says_how_to_set_one(redis_server, redis_client):
    result = CliRunner(env={"REDIS_URL": redis_server.url, "REACTIONS_PUBLIC_URL": ""}).invoke(
        main, ["sites", "add", "blog", "--origin", "https://blog.example.com"]
    )
    assert result.exit_code == 0, result.output
    assert 'src="https://YOUR-REACTIONS-SERVER/embed.js" data-site="blog"' in result.output
    assert "set REACTIONS_PUBLIC_URL (e.g. https://reactions.example.com)" in result.output


def admin_snippets(app) -> list[str]:
    """The snippets the sites page and a site's page offer to copy, unescaped."""
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/admin/login", data={"password": PASSWORD, "csrf_token": csrf})
    app.extensions["reactions"].save_site(Site("blog", ("https://blog.example.com",)))
    pages = [client.get(path).get_data(as_text=True) for path in ("/admin/", "/admin/sites/blog")]
    return [
        html.unescape(snippet)
        for page in pages
        for snippet in re.findall(r"<textarea[^>]*>([^<]*data-site=&#34;blog&#34;[^<]*)<", page)
    ]


@pytest.mark.parametrize(
    ("public_url", "server"),
    [
        ("https://example.com/rx", "https://example.com/rx"),
        # Unset: the address the admin page was opened at.
        ("", "http://localhost"),
    ],
)
def test_the_admin_offers_the_same_snippet(redis_url, redis_client, public_url, server):
    app = admin_app(redis_url, PASSWORD)
    app.config["REACTIONS_PUBLIC_URL"] = public_url
    snippets = admin_snippets(app)
    assert len(snippets) == 2
    assert set(snippets) == {
        f'<script src="{server}/embed.js" data-site="blog" async></script>\n'
        '<emoji-reactions data-article="ARTICLE-ID"></emoji-reactions>'
    }
