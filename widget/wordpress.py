"""Read a WordPress export (WXR) for the counts of the Booster Extension reaction plugin.

The plugin keeps each post's counts in post meta `twp_be_react_1` … `twp_be_react_6`.
Parsing goes through defusedxml: an export file is untrusted input, and the standard library
parser does not refuse entity-expansion bombs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

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
WP_NAMESPACE_PREFIX = "{http://wordpress.org/export/"


class NotWordpressExport(ReactionsError):
    code = "not_wxr"


@dataclass
class ImportedPost:
    article: str
    url: str
    title: str
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_posts(path: str) -> list[ImportedPost]:
    """Every item of the export that carries reaction counts, keyed by its permalink."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, DefusedXmlException) as error:
        raise NotWordpressExport(f"{path} is not a WordPress export (WXR): {error}") from None
    channel = root.find("channel")
    if root.tag != "rss" or channel is None or not _wp_namespace(channel):
        raise NotWordpressExport(
            f"{path} is not a WordPress export (WXR): no <rss><channel> with wp:wxr_version"
        )
    namespace = _wp_namespace(channel)
    posts = []
    for item in channel.iter("item"):
        counts: dict[str, int] = {}
        warnings = []
        for meta in item.iter(f"{namespace}postmeta"):
            key = (meta.findtext(f"{namespace}meta_key") or "").strip()
            if key not in BOOSTER_SLOTS:
                continue
            raw = (meta.findtext(f"{namespace}meta_value") or "").strip()
            if raw.isdigit():
                counts[BOOSTER_SLOTS[key]] = int(raw)
            else:
                warnings.append(f"{key} has value {raw[:40]!r}, not a count: taken as 0")
        if not counts and not warnings:
            continue
        link = (item.findtext("link") or "").strip()
        try:
            article = normalize_article(link)
        except ReactionsError as error:
            raise NotWordpressExport(f"an item has no usable <link>: {error.detail}") from None
        posts.append(
            ImportedPost(
                article=article,
                url=link,
                title=validate_title(item.findtext("title") or ""),
                counts=counts,
                warnings=warnings,
            )
        )
    return posts


def _wp_namespace(channel) -> str:
    for child in channel:
        if child.tag.startswith(WP_NAMESPACE_PREFIX) and child.tag.endswith("}wxr_version"):
            return child.tag[: child.tag.index("}") + 1]
    return ""
