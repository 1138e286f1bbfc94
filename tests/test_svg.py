"""Counts without JavaScript: the SVG image of an article's reactions, for `<noscript>`, feeds
and e-mail, against a real Redis and in Chromium."""

from urllib.parse import urlencode

import pytest
from defusedxml import ElementTree

from tests.servers import host_page, wait_until
from widget import create_app
from widget.reactions import Reaction
from widget.store import Site

ORIGIN = "http://localhost"  # the test client's own origin: the demo site accepts it
SVG = "{http://www.w3.org/2000/svg}"
# Every element and attribute the image may have: anything else came from the data.
ELEMENTS = {"svg", "title", "desc", "defs", "clipPath", "g", "rect", "text"}
ATTRIBUTES = {
    "width",
    "height",
    "viewBox",
    "role",
    "aria-labelledby",
    "font-family",
    "font-size",
    "text-anchor",
    "fill",
    "id",
    "rx",
    "transform",
    "clip-path",
    "x",
    "y",
    "stroke",
}
HOSTILE_ARTICLES = [
    '"><script>alert(1)</script>',
    "]]><x onload='alert(1)'/><![CDATA[",
    'Tom & Jerry\'s "quoted" <title>',
    "\N{GRINNING FACE} <svg onload=alert(1)> \N{PILE OF POO}",
    '&<>"' * 128,  # 512 characters, the longest id there is
]


def image_url(article="first-post", site="demo", **more):
    return "/api/v1/reactions.svg?" + urlencode({"site": site, "article": article, **more})


def vote(client, reaction, reader, article="first-post", site="demo"):
    body = {"site": site, "article": article, "reader": reader, "reaction": reaction}
    response = client.post("/api/v1/reactions", json=body, headers={"Origin": ORIGIN})
    assert response.status_code == 200 and response.get_json()["counted"]


def parse(response):
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"] == "image/svg+xml"
    return ElementTree.fromstring(response.data)


def boxes(root):
    """The text of each reaction's box, in order: [emoji, label, percentage]."""
    return [[t.text for t in box.iter(f"{SVG}text")] for box in root.iter(f"{SVG}g")]


def assert_only_our_markup(root):
    for element in root.iter():
        assert element.tag.startswith(SVG), element.tag
        assert element.tag.removeprefix(SVG) in ELEMENTS, element.tag
        assert set(element.attrib) <= ATTRIBUTES, element.attrib


def test_the_image_shows_the_same_percentages_as_the_json(client):
    for number, reaction in enumerate(["happy", "happy", "sad", "angry", "angry", "angry"]):
        vote(client, reaction, reader=f"reader-{number}-aaaaaaaaaaaa")
    counts = client.get("/api/v1/reactions?site=demo&article=first-post").get_json()

    root = parse(client.get(image_url()))

    shown = [[r["emoji"], r["label"], f"{r['percent']}%"] for r in counts["reactions"]]
    assert boxes(root) == shown
    figures = ", ".join(f"{r['label']} {r['percent']}%" for r in counts["reactions"])
    assert root.find(f"{SVG}desc").text == f"{figures}, 6 reactions"
    assert root.find(f"{SVG}title").text == "Reactions to first-post"
    assert root.get("role") == "img"
    labelled_by = root.get("aria-labelledby").split()
    assert [root.find(f"{SVG}{tag}").get("id") for tag in ("title", "desc")] == labelled_by


def test_an_article_nobody_reacted_to_shows_zeros(client):
    root = parse(client.get(image_url("never-read")))
    assert [box[2] for box in boxes(root)] == ["0%"] * 6
    assert root.find(f"{SVG}desc").text.endswith(", 0 reactions")


@pytest.mark.parametrize(
    ("reactions", "width", "height"),
    # The bar's grid: 72 × 66 px boxes 6 px apart, at most 8 a row, rows balanced.
    [(1, 72, 66), (6, 6 * 72 + 5 * 6, 66), (8, 8 * 72 + 7 * 6, 66), (9, 5 * 72 + 4 * 6, 138)],
)
def test_the_image_has_a_stated_size_that_follows_the_reaction_set(
    client, store, reactions, width, height
):
    offered = tuple(Reaction(f"r{i}", "\N{THUMBS UP SIGN}", f"R{i}") for i in range(reactions))
    store.save_site(Site("sized", (ORIGIN,), reactions=offered))

    root = parse(client.get(image_url(site="sized")))

    assert (root.get("width"), root.get("height")) == (str(width), str(height))
    assert root.get("viewBox") == f"0 0 {width} {height}"
    assert len(boxes(root)) == reactions


def test_reads_revalidate_by_etag_as_the_json_does(client):
    vote(client, "happy", reader="reader-one-aaaaaaaaaaaa")
    first = client.get(image_url(), headers={"Origin": "https://blog.example"})
    assert first.headers.getlist("Access-Control-Allow-Origin") == ["*"]
    assert first.headers["Cache-Control"] == "public, no-cache"
    assert first.headers["CDN-Cache-Control"] == "public, max-age=5"
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert (
        first.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    )
    etag = first.headers["ETag"]

    repeat = client.get(image_url(), headers={"If-None-Match": etag})
    assert repeat.status_code == 304 and repeat.data == b""
    assert repeat.headers["ETag"] == etag
    assert repeat.headers["CDN-Cache-Control"] == "public, max-age=5"

    vote(client, "sad", reader="reader-two-aaaaaaaaaaaa")
    changed = client.get(image_url(), headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert [box[2] for box in boxes(parse(changed))][:2] == ["50%", "50%"]


def test_the_dark_theme_differs_in_colours_only(client):
    vote(client, "happy", reader="reader-one-aaaaaaaaaaaa")
    light, dark = (client.get(image_url(theme=theme)) for theme in ("light", "dark"))
    assert client.get(image_url()).data == light.data  # light is the default
    assert light.headers["ETag"] != dark.headers["ETag"]

    def colours(root):
        return {e.get(name) for e in root.iter() for name in ("fill", "stroke")} - {None}

    light_root, dark_root = parse(light), parse(dark)
    assert colours(light_root).isdisjoint(colours(dark_root) - {"none"})
    assert boxes(light_root) == boxes(dark_root)
    assert light_root.attrib.keys() == dark_root.attrib.keys()


@pytest.mark.parametrize("article", HOSTILE_ARTICLES)
def test_a_hostile_article_id_is_only_text(client, article):
    vote(client, "happy", reader="reader-one-aaaaaaaaaaaa", article=article)

    root = parse(client.get(image_url(article)))

    assert_only_our_markup(root)
    assert root.find(f"{SVG}title").text == f"Reactions to {article}"
    assert [box[2] for box in boxes(root)][0] == "100%"


def test_a_hostile_label_or_emoji_is_only_text(client, store):
    offered = (
        Reaction("odd", "<img src=x onerror=alert(1)>", "a<b>&\"'c"),
        Reaction("cdata", "]]>", "]]&amp;\x07"),
        Reaction("plain", "\N{THUMBS UP SIGN}", "Like"),
    )
    store.save_site(Site("hostile", (ORIGIN,), reactions=offered))
    vote(client, "odd", reader="reader-one-aaaaaaaaaaaa", site="hostile")

    root = parse(client.get(image_url(site="hostile")))

    assert_only_our_markup(root)
    # Characters XML cannot carry (a bell) are dropped.
    assert boxes(root) == [
        ["<img src=x onerror=alert(1)>", "a<b>&\"'c", "100%"],
        ["]]>", "]]&amp;", "0%"],
        ["\N{THUMBS UP SIGN}", "Like", "0%"],
    ]
    assert root.find(f"{SVG}desc").text == "a<b>&\"'c 100%, ]]&amp; 0%, Like 0%, 1 reaction"


def test_a_long_label_is_shortened_in_its_box_and_whole_in_the_description(client, store):
    offered = (Reaction("long", "\N{THUMBS UP SIGN}", "Extraordinarily good"),)
    store.save_site(Site("wordy", (ORIGIN,), reactions=offered))
    root = parse(client.get(image_url(site="wordy")))
    assert boxes(root) == [["\N{THUMBS UP SIGN}", "Extraord…", "0%"]]
    assert root.find(f"{SVG}desc").text == "Extraordinarily good 0%, 0 reactions"


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ({"site": "demo"}, 400, "invalid_field"),
        ({"article": "a"}, 400, "invalid_field"),
        ({"site": "nosuch", "article": "a"}, 403, "unknown_site"),
        ({"site": "demo", "article": " "}, 400, "invalid_field"),
        ({"site": "demo", "article": "a" * 513}, 400, "invalid_field"),
        ({"site": "demo", "article": "a", "theme": "blue"}, 400, "invalid_field"),
        ({"site": "demo", "article": "a", "theme": "<script>"}, 400, "invalid_field"),
    ],
)
def test_bad_reads_get_the_json_errors_of_the_json_get(client, redis_client, query, status, error):
    response = client.get("/api/v1/reactions.svg?" + urlencode(query))
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.get_json()) == {"error", "detail"}
    assert response.get_json()["error"] == error
    assert redis_client.keys("rx:{*") == []  # a read creates nothing


def test_redis_down_is_a_quick_json_503(tmp_path):
    # A socket path nothing listens on: Redis is "down".
    app = create_app(
        {"REDIS_URL": f"unix://{tmp_path}/none.sock", "REACTIONS_SECRET_KEY": "x" * 20}
    )
    response = app.test_client().get(image_url())
    assert response.status_code == 503
    assert response.get_json()["error"] == "store_unavailable"
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_chromium_shows_the_image_at_its_stated_size(client, live_server, page, theme):
    vote(client, "happy", reader="reader-one-aaaaaaaaaaaa")
    vote(client, "sad", reader="reader-two-aaaaaaaaaaaa")
    source = live_server.url + image_url(theme=theme)
    stated = parse(client.get(image_url(theme=theme)))
    # As a feed or e-mail would embed it; read back through a canvas (the image is
    # readable from any origin) to see that it drew something.
    html = (
        f'<img id="counts" crossorigin="anonymous" src="{source}" alt="Reactions"><canvas></canvas>'
    )
    with host_page(html) as url:
        page.goto(url)
        wait_until(lambda: page.evaluate("document.getElementById('counts').complete"))
        size = page.evaluate(
            "(() => { const img = document.getElementById('counts');"
            " return [img.naturalWidth, img.naturalHeight]; })()"
        )
        colours = page.evaluate(
            """(() => {
              const img = document.getElementById('counts');
              const canvas = document.querySelector('canvas');
              canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
              const context = canvas.getContext('2d');
              context.drawImage(img, 0, 0);
              const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
              const seen = new Set();
              for (let i = 0; i < pixels.length; i += 4) {
                if (pixels[i + 3] > 0) seen.add(pixels.slice(i, i + 4).join());
              }
              return seen.size;
            })()"""
        )
    assert size == [int(stated.get("width")), int(stated.get("height"))]
    assert size[0] > 0 and size[1] > 0  # a broken image has no natural size
    # Boxes, fills, lines and anti-aliased text: far more than a blank or one-colour image.
    assert colours > 20, colours
    assert page.errors == []


def test_a_reader_without_javascript_sees_the_image_of_the_noscript_snippet(
    client, live_server, browser
):
    vote(client, "angry", reader="reader-one-aaaaaaaaaaaa")
    source = live_server.url + image_url().replace("&", "&amp;")
    # The README's snippet, next to the bar it stands in for.
    html = (
        f'<script src="{live_server.url}/embed.js" data-site="demo" async></script>'
        '<emoji-reactions data-article="first-post"></emoji-reactions>'
        f'<noscript><img src="{source}" width="462" height="66" alt="Reactions"></noscript>'
    )
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    images = []
    page.on(
        "response", lambda response: "/reactions.svg" in response.url and images.append(response)
    )
    with host_page(html) as url:
        page.goto(url)
        # Only a browser without scripting makes the <img> of a <noscript> an element.
        wait_until(lambda: page.evaluate("document.querySelector('img')?.complete"))
        natural = page.evaluate(
            "(() => { const img = document.querySelector('img');"
            " return [img.naturalWidth, img.naturalHeight]; })()"
        )
    context.close()
    assert [response.status for response in images] == [200]
    assert natural == [462, 66]
