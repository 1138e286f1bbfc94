"""`reactions import wordpress`: Booster Extension counts from a WXR file."""

import pytest
from click.testing import CliRunner

from widget.cli import main

WXR = """<?xml version="1.0" encoding="UTF-8" ?>
<rss version="2.0"
  xmlns:content="http://purl.org/rss/1.0/modules/content/"
  xmlns:dc="http://purl.org/dc/elements/1.1/"
  xmlns:wp="http://wordpress.org/export/1.2/">
<channel>
  <title>My Blog</title>
  <link>https://blog.example.com</link>
  <wp:wxr_version>1.2</wp:wxr_version>
  <item>
    <title>First &amp; best post</title>
    <link>https://blog.example.com/2024/01/first-post/</link>
    <wp:post_type><![CDATA[post]]></wp:post_type>
    <wp:postmeta><wp:meta_key><![CDATA[_edit_last]]></wp:meta_key><wp:meta_value><![CDATA[1]]></wp:meta_value></wp:postmeta>
    <wp:postmeta><wp:meta_key><![CDATA[twp_be_react_1]]></wp:meta_key><wp:meta_value><![CDATA[5]]></wp:meta_value></wp:postmeta>
    <wp:postmeta><wp:meta_key><![CDATA[twp_be_react_2]]></wp:meta_key><wp:meta_value><![CDATA[1]]></wp:meta_value></wp:postmeta>
    <wp:postmeta><wp:meta_key><![CDATA[twp_be_react_4]]></wp:meta_key><wp:meta_value><![CDATA[2]]></wp:meta_value></wp:postmeta>
    <wp:postmeta><wp:meta_key><![CDATA[twp_be_react_6]]></wp:meta_key><wp:meta_value><![CDATA[3]]></wp:meta_value></wp:postmeta>
  </item>
  <item>
    <title>Second post</title>
    <link>https://blog.example.com/2024/02/second/</link>
    <wp:postmeta><wp:meta_key>twp_be_react_3</wp:meta_key><wp:meta_value>4</wp:meta_value></wp:postmeta>
    <wp:postmeta><wp:meta_key>twp_be_react_5</wp:meta_key><wp:meta_value>oops</wp:meta_value></wp:postmeta>
  </item>
  <item>
    <title>A page without reactions</title>
    <link>https://blog.example.com/about/</link>
  </item>
</channel>
</rss>
"""
FIRST = "https://blog.example.com/2024/01/first-post/"
SECOND = "https://blog.example.com/2024/02/second/"


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export.xml"
    path.write_text(WXR)
    return str(path)


@pytest.fixture
def runner(redis_server, redis_client):
    runner = CliRunner(env={"REDIS_URL": redis_server.url})
    runner.invoke(main, ["sites", "add", "blog", "--origin", "https://blog.example.com"])
    return runner


def test_dry_run_prints_and_changes_nothing(runner, redis_client, export):
    result = runner.invoke(main, ["import", "wordpress", export, "--site", "blog", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (
        f"would import {FIRST} (First & best post): happy 5, sad 1, angry 2, sleepy 3"
        in result.output
    )
    assert "2 posts with reactions, 15 reactions in the file." in result.output
    assert redis_client.keys("rx:{blog}:*") == []


def test_import_sets_starting_counts_once(runner, redis_client, export, store, client):
    first = runner.invoke(main, ["import", "wordpress", export, "--site", "blog"])
    assert first.exit_code == 0, first.output
    assert "Counts changed by +15" in first.output
    assert "twp_be_react_5 has value 'oops'" in first.output
    assert store.counts("blog", FIRST) == {"happy": 5, "sad": 1, "angry": 2, "sleepy": 3}
    assert store.counts("blog", SECOND) == {"excited": 4}
    (stats,) = store.article_stats("blog", [FIRST])
    assert stats.title == "First & best post" and stats.url == FIRST

    again = runner.invoke(main, ["import", "wordpress", export, "--site", "blog"])
    assert "Counts changed by +0" in again.output
    assert store.counts("blog", FIRST) == {"happy": 5, "sad": 1, "angry": 2, "sleepy": 3}
    (site_stats,) = store.site_stats([store.get_site("blog")])
    assert site_stats.total == 15 and site_stats.articles == 2

    # A live reaction on top of imported counts survives a re-import.
    blog = store.get_site("blog")
    store.set_reaction(blog, FIRST, store.reader_hash("blog", "live-reader"), "happy")
    runner.invoke(main, ["import", "wordpress", export, "--site", "blog"])
    assert store.counts("blog", FIRST)["happy"] == 6
    body = client.get(
        "/api/v1/reactions", query_string={"site": "blog", "article": FIRST}
    ).get_json()
    assert body["total"] == 12


@pytest.mark.parametrize(
    "content",
    ["not xml at all", "<rss><channel><title>x</title></channel></rss>", "<html><body/></html>",
     '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><rss>&b;</rss>'],
)  # fmt: skip
def test_a_file_that_is_not_wxr_is_refused(runner, redis_client, tmp_path, content):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    result = runner.invoke(main, ["import", "wordpress", str(path), "--site", "blog"])
    assert result.exit_code == 1
    assert "is not a WordPress export (WXR)" in result.output
    assert redis_client.keys("rx:{blog}:*") == []


def test_an_unknown_site_is_refused(runner, export):
    result = runner.invoke(main, ["import", "wordpress", export, "--site", "nosuch"])
    assert result.exit_code == 1 and "no site 'nosuch'" in result.output
