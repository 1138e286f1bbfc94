"""Read a WordPress export (WXR) for the counts of the Booster Extension reaction plugin.

The plugin keeps each post's counts in post meta `twp_be_react_1` … `twp_be_react_6`, and
those of its like/dislike counter in `twp_be_like_count` and `twp_be_dislike_like_count`
(sic), which go to the site's `thumbs` set. A post
is keyed by its `<link>`, the permalink WordPress also prints as the page's
`<link rel="canonical">`, normalized as the widget's article ids are: so the counts land on
the article the widget will show on that page, plain permalinks (`?p=123`) included.

Parsing goes through defusedxml: an export file is untrusted input, and the standard library
parser does not refuse entity-expansion bombs. A file that is refused is explained in the
words of a site owner, not of an XML parser.
"""

from __future__ import annotations

import html
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from xml.etree.ElementTree import ParseError

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException, EntitiesForbidden

from .reactions import ReactionsError, normalize_article, validate_title

# Slot number → our reaction id, as the plugin orders its default set.
BOOSTER_SLOTS = {
    "twp_be_react_1": "happy",
    "twp_be_react_2": "sad",
    "twp_be_react_3": "excited",
    "twp_be_react_4": "angry",
    "twp_be_react_5": "surprise",
    "twp_be_react_6": "sleepy",
}
# The like/dislike counter's post meta → our reaction id in the `thumbs` set, as Booster
# Extension 1.1.7 writes them in inc/backend/twp-be-like-dislike.php (its AJAX callback,
# booster_extension_like_dislike_callback: update_post_meta on each click), and prints them
# in inc/frontend/like-dislike.php. The same callback keeps each voter's raw IP address in
# `twp_be_ip_address_lists_like` / `_dislike`: those are never read.
BOOSTER_LIKE_DISLIKE = {
    "twp_be_like_count": "like",
    "twp_be_dislike_like_count": "dislike",
}
# The named set the like/dislike counts go to.
THUMBS_SET = "thumbs"
# WordPress writes http://wordpress.org/export/1.2/; WordPress.com writes https. Versions 1.0
# (WordPress 2.x-3.0) and 1.1 (3.1) differ from 1.2 only in what we do not read.
WP_NAMESPACE = re.compile(r"https?://wordpress\.org/export/(\d+\.\d+)/")
# A count the plugin can have written: digits, and below anything a Redis counter could
# overflow on.
COUNT = re.compile(r"[0-9]{1,12}")

CONTENT_TYPES = ("post", "page")
# Why an item is skipped → (one, many), as the summary names them. Types WordPress itself
# registers are never an article of their own.
WORDPRESS_TYPES = {
    "attachment": ("attachment", "attachments"),
    "nav_menu_item": ("navigation menu item", "navigation menu items"),
    "revision": ("revision", "revisions"),
    "wp_block": ("pattern (reusable block)", "patterns (reusable blocks)"),
    "wp_template": ("block template", "block templates"),
    "wp_template_part": ("block template part", "block template parts"),
    "wp_global_styles": ("global styles item", "global styles items"),
    "wp_navigation": ("navigation block menu", "navigation block menus"),
    "wp_font_family": ("font family", "font families"),
    "wp_font_face": ("font face", "font faces"),
    "custom_css": ("custom CSS item", "custom CSS items"),
    "customize_changeset": ("customizer changeset", "customizer changesets"),
    "oembed_cache": ("oEmbed cache item", "oEmbed cache items"),
    "user_request": ("privacy request", "privacy requests"),
}
SKIPPED_STATUSES = {
    "draft": ("draft", "drafts"),
    "pending": ("post pending review", "posts pending review"),
    "future": ("scheduled post", "scheduled posts"),
    "trash": ("post in the trash", "posts in the trash"),
    "private": ("private post", "private posts"),
    "auto-draft": ("automatic draft", "automatic drafts"),
}
# How a skipped kind's reactions can still come in.
SKIPPED_HINTS = {
    "private": "--include-private imports them",
    "draft": "publish it, then import a new export",
    "pending": "publish it, then import a new export",
    "future": "import an export made after it is published",
    "trash": "restore it, then import a new export",
}
EXPORT_HINT = (
    "Export again in wp-admin under Tools → Export (All content; on WordPress.com: "
    "Tools → Export → Export all)."
)


class NotWordpressExport(ReactionsError):
    code = "not_wxr"


class ConflictingPosts(ReactionsError):
    """Two posts of the export would be one article: importing would add up their counts."""

    code = "conflicting_posts"


@dataclass
class ImportedPost:
    post_id: str
    post_type: str
    article: str
    url: str
    title: str
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    # The like/dislike counter's counts (for the `thumbs` set), when the post has them.
    thumbs: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        return f'{self.post_type} {self.post_id} "{self.title or "untitled"}"'


@dataclass
class WordpressExport:
    """What an export holds for us: the published posts with counts, and what was skipped."""

    version: str
    posts: list[ImportedPost]
    # Published posts and pages (and chosen types), with or without counts.
    published: int = 0
    password_protected: int = 0
    # ("type" or "status", name) → number of items skipped for it, and their reactions.
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped_reactions: Counter[tuple[str, str]] = field(default_factory=Counter)

    def summary(self) -> list[str]:
        """What the export held and what of it was left out, by reason: for the importer."""
        protected = (
            f", {self.password_protected} of them password-protected"
            if self.password_protected
            else ""
        )
        with_reactions = sum(1 for post in self.posts if post.counts or not post.thumbs)
        lines = [
            f"WordPress export (WXR {self.version}): {self.published} published posts "
            f"and pages{protected}; {with_reactions} with reactions, "
            f"{self.total} reactions."
        ]
        thumbs = [post.thumbs for post in self.posts if post.thumbs]
        if thumbs:
            likes = sum(t.get("like", 0) for t in thumbs)
            dislikes = sum(t.get("dislike", 0) for t in thumbs)
            lines.append(
                f"Like/dislike counter: {len(thumbs)} posts and pages with counts, "
                f"{likes} likes, {dislikes} dislikes."
            )
        if self.skipped:
            skipped = ", ".join(self.skipped_summary())
            lines.append(f"Skipped {self.skipped.total()} items: {skipped}.")
        return lines

    def skipped_summary(self) -> list[str]:
        """Each reason as "2 drafts (5 reactions: …)", most frequent first."""
        parts = []
        for (kind, name), number in self.skipped.most_common():
            if kind == "type":
                label = WORDPRESS_TYPES.get(name, (f"item of type '{name}'",) * 2)
                hint = None if name in WORDPRESS_TYPES else f"--post-type {name} imports them"
            else:
                label = SKIPPED_STATUSES.get(name, (f"post with status '{name}'",) * 2)
                hint = SKIPPED_HINTS.get(name)
            part = f"{number} {label[0] if number == 1 else label[1]}"
            lost = self.skipped_reactions[kind, name]
            if lost:
                part += f" ({lost} reactions" + (f": {hint})" if hint else ")")
            parts.append(part)
        return parts

    @property
    def total(self) -> int:
        return sum(post.total for post in self.posts)


def read_export(
    path: str, include_private: bool = False, post_types: tuple[str, ...] = ()
) -> WordpressExport:
    """The export's published posts and pages with reaction counts, one per article.

    Drafts, scheduled, trashed and private posts, attachments, menu items and other types are
    counted in `skipped` by reason. Raises NotWordpressExport for a file that is not an export
    and ConflictingPosts when two posts would share an article; nothing is half-read.
    """
    root, namespace = _parse(path)
    channel = root.find("channel")
    version = (channel.findtext(f"{namespace}wxr_version") or "").strip()
    wanted_types = set(CONTENT_TYPES) | set(post_types)
    export = WordpressExport(version=version, posts=[])
    by_article: dict[str, list[ImportedPost]] = {}
    for item in channel.iter("item"):
        post = _read_item(item, namespace)
        status = (item.findtext(f"{namespace}status") or "").strip() or "(none)"
        reason = None
        if post.post_type not in wanted_types:
            reason = ("type", post.post_type or "(none)")
        elif status != "publish" and not (status == "private" and include_private):
            reason = ("status", status)
        if reason is not None:
            export.skipped[reason] += 1
            export.skipped_reactions[reason] += post.total
            continue
        export.published += 1
        if (item.findtext(f"{namespace}post_password") or "").strip():
            export.password_protected += 1
        if not post.article:
            if post.counts:
                raise NotWordpressExport(
                    f"{post.describe()} has reactions but no usable address (<link>) in the "
                    "export, so there is no article to give them to"
                )
            continue
        by_article.setdefault(post.article, []).append(post)
    conflicts = []
    for article, posts in by_article.items():
        first = posts[0]
        # The same item twice (a file joined from two exports) is one post, not a conflict.
        if all(
            p.post_id == first.post_id and p.counts == first.counts and p.thumbs == first.thumbs
            for p in posts
        ):
            if first.counts or first.warnings or first.thumbs:
                export.posts.append(first)
            continue
        conflicts.append(f"  {article}: " + " and ".join(p.describe() for p in posts))
    if conflicts:
        raise ConflictingPosts(
            "These addresses belong to more than one post of the export, and the widget "
            "would count those posts as one article; nothing was imported:\n"
            + "\n".join(conflicts)
            + "\nGive each post its own address in WordPress (its URL slug, in the post's "
            "settings), export again and import the new file."
        )
    return export


def _read_item(item, namespace: str) -> ImportedPost:
    counts: dict[str, int] = {}
    thumbs: dict[str, int] = {}
    warnings = []
    for meta in item.iter(f"{namespace}postmeta"):
        key = (meta.findtext(f"{namespace}meta_key") or "").strip()
        if key in BOOSTER_SLOTS:
            found, reaction = counts, BOOSTER_SLOTS[key]
        elif key in BOOSTER_LIKE_DISLIKE:
            found, reaction = thumbs, BOOSTER_LIKE_DISLIKE[key]
        else:
            continue  # every other meta, the voters' IP address lists among them
        raw = (meta.findtext(f"{namespace}meta_value") or "").strip()
        if COUNT.fullmatch(raw):
            found[reaction] = int(raw)
        else:
            warnings.append(f"{key} has value {raw[:40]!r}, not a count: taken as 0")
    link = (item.findtext("link") or "").strip()
    try:
        article = normalize_article(link) if link else ""
    except ReactionsError:
        article = ""
    # Titles may carry HTML entities (WordPress stores some, 1.0/1.1 exports escape them).
    title = validate_title(html.unescape(item.findtext("title") or ""))
    return ImportedPost(
        post_id=(item.findtext(f"{namespace}post_id") or "?").strip(),
        post_type=(item.findtext(f"{namespace}post_type") or "").strip(),
        article=article,
        url=link,
        title=title,
        counts=counts,
        warnings=warnings,
        thumbs=thumbs,
    )


def _parse(path: str):
    """The document's root and the `{uri}` of its wp: namespace, or a refusal that explains
    what the file is instead."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        head = file.read(4096)
        file.seek(max(0, size - 512))
        tail = file.read()
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start:
        raise NotWordpressExport(f"{path} is empty: the export did not download. {EXPORT_HINT}")
    if start[:1] in (b"{", b"["):
        raise NotWordpressExport(
            f"{path} is a JSON file, not a WordPress export (an XML file). {EXPORT_HINT}"
        )
    if re.match(rb"<!doctype html|<html[\s>]", start, re.IGNORECASE):
        raise NotWordpressExport(
            f"{path} is a web page (HTML), not a WordPress export: the browser saved a page "
            f"(a login or error page?) instead of the download. {EXPORT_HINT}"
        )
    declared: dict[str, str] = {}
    try:
        parser = ElementTree.iterparse(path, events=("start-ns",))
        for _event, (prefix, uri) in parser:
            declared.setdefault(prefix, uri)
        root = parser.root
    except EntitiesForbidden:
        raise NotWordpressExport(
            f"{path} declares XML entities, which WordPress exports never do: it was not "
            "read, as such a file can be built to exhaust memory"
        ) from None
    except DefusedXmlException:
        raise NotWordpressExport(
            f"{path} declares a DTD that refers to other files, which WordPress exports never "
            "do: it was not read"
        ) from None
    except ParseError as error:
        raise NotWordpressExport(_parse_error(path, error, tail)) from None
    local = root.tag.rsplit("}", 1)[-1]
    channel = root.find("channel")
    if local != "rss" or channel is None:
        raise NotWordpressExport(
            f"{path} is XML but not a WordPress export: it starts with <{local}>, an export "
            f"with <rss><channel>. {EXPORT_HINT}"
        )
    version_element = next((child for child in channel if child.tag.endswith("}wxr_version")), None)
    uri = version_element.tag[1:].split("}")[0] if version_element is not None else ""
    if not WP_NAMESPACE.fullmatch(uri):
        wp = declared.get("wp", "")
        if wp and not WP_NAMESPACE.fullmatch(wp):
            raise NotWordpressExport(
                f'{path} declares its wp: namespace as "{wp}", where WordPress writes '
                '"http://wordpress.org/export/1.2/" (or https): it was not written by '
                f"WordPress, or was edited. {EXPORT_HINT}"
            )
        if WP_NAMESPACE.fullmatch(wp):
            raise NotWordpressExport(
                f"{path} has WordPress's wp: namespace but no <wp:wxr_version>: it was not "
                f"written by WordPress's exporter. {EXPORT_HINT}"
            )
        raise NotWordpressExport(
            f"{path} is an RSS feed, not a WordPress export: it has no wp: elements (no "
            "<wp:wxr_version>, no post ids, no post meta), so no reaction counts. A feed "
            f"such as https://your.site/feed/ lists only the latest posts. {EXPORT_HINT}"
        )
    return root, "{" + uri + "}"


def _parse_error(path: str, error: ParseError, tail: bytes) -> str:
    line, column = error.position
    reason = str(error).split(":")[0]
    if not tail.rstrip().endswith(b"</rss>"):
        return (
            f"{path} ends before the export does (at line {line}, without the closing "
            "</rss>): the download was cut off or the file was not saved completely. "
            f"{EXPORT_HINT}"
        )
    if reason == "unbound prefix":
        return (
            f"{path} uses wp: elements (line {line}) without declaring the wp: namespace "
            '(xmlns:wp="http://wordpress.org/export/1.2/" on <rss>), which every WordPress '
            "export declares: the file was edited or converted by another program. "
            f"{EXPORT_HINT}"
        )
    return (
        f"{path} is not well-formed XML ({reason} at line {line}, column {column + 1}): "
        "WordPress writes exports that are; the file was damaged or edited. "
        f"{EXPORT_HINT}"
    )
