"""The counts of one article as an SVG image, for readers without JavaScript (feeds, e-mail,
`<noscript>`): the bar's boxes, emoji, labels and percentages, drawn from the public body.

Pure: no I/O. Every piece of text is XML-escaped; characters XML cannot carry are dropped.
"""

from __future__ import annotations

import math
import re
from html import escape

THEMES = ("light", "dark")
# The bar's colours (static/js/embed.js): ink, box background, box line, share fill.
COLOURS = {
    "light": ("#1f2328", "#ffffff", "#d0d7de", "#fde7d4"),
    "dark": ("#e6e1d9", "#202124", "#3c4043", "#4a2a14"),
}
# The bar's geometry: 66 px boxes 6 px apart, at most 8 a row, rows balanced.
BOX_WIDTH = 72
BOX_HEIGHT = 66
GAP = 6
MOST_PER_ROW = 8
# A longer label is shortened with an ellipsis: an image cannot wrap or scale its text.
MAX_LABEL_CHARACTERS = 9
TEXT_FONTS = "system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif"
EMOJI_FONTS = "'Apple Color Emoji','Segoe UI Emoji','Noto Color Emoji',sans-serif"
# What XML 1.0 cannot hold even escaped: most C0 controls, lone surrogates, U+FFFE/U+FFFF.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def size(count: int) -> tuple[int, int]:
    """Width and height in pixels of the image of `count` reactions: fixed per reaction set,
    so a page can reserve the space of an `<img>`."""
    columns, rows = _grid(count)
    return columns * (BOX_WIDTH + GAP) - GAP, rows * (BOX_HEIGHT + GAP) - GAP


def _grid(count: int) -> tuple[int, int]:
    count = max(1, count)
    columns = math.ceil(count / math.ceil(count / MOST_PER_ROW))
    return columns, math.ceil(count / columns)


def text(value: object) -> str:
    """`value` as XML character data or attribute value: escaped, quotes too."""
    return escape(NOT_XML.sub("", str(value)), quote=True)


def describe(summary: dict) -> str:
    """The figures in words, as a screen reader reads the image: "Happy 40%, Sad 0%, …,
    5 reactions"."""
    shares = [f"{r['label']} {figure(summary, r)}" for r in summary["reactions"]]
    total = summary["total"]
    return ", ".join([*shares, f"{total} reaction" if total == 1 else f"{total} reactions"])


def figure(summary: dict, reaction: dict) -> str:
    """What a reaction's box shows: its percentage, or its count in a set of the compact
    style (`"style":"count"`)."""
    if summary.get("style") == "count":
        return f"{reaction['count']:d}"
    return f"{reaction['percent']:d}%"


def short_label(label: str) -> str:
    label = NOT_XML.sub("", label)
    return label if len(label) <= MAX_LABEL_CHARACTERS else label[: MAX_LABEL_CHARACTERS - 1] + "…"


def render(summary: dict, theme: str = "light") -> str:
    """The SVG document of `summary`, the body of the JSON GET (site, article, total, and
    each reaction with its emoji, label and percent), in the light or dark theme."""
    ink, background, line, fill = COLOURS[theme]
    reactions = summary["reactions"]
    width, height = size(len(reactions))
    columns, _ = _grid(len(reactions))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="rx-title rx-desc" '
        f'font-family="{TEXT_FONTS}" font-size="13" text-anchor="middle" fill="{ink}">'
        f'<title id="rx-title">Reactions to {text(summary["article"])}</title>'
        f'<desc id="rx-desc">{text(describe(summary))}</desc>'
        # One clip for every box, in each box's own coordinates: the share fill and any long
        # emoji stay inside the rounded box, as the bar's overflow:hidden does.
        f'<defs><clipPath id="rx-box"><rect width="{BOX_WIDTH}" height="{BOX_HEIGHT}" '
        f'rx="12"/></clipPath></defs>'
    ]
    for index, reaction in enumerate(reactions):
        row, column = divmod(index, columns)
        x, y = column * (BOX_WIDTH + GAP), row * (BOX_HEIGHT + GAP)
        share = BOX_HEIGHT * reaction["percent"] / 100
        parts.append(
            f'<g transform="translate({x} {y})" clip-path="url(#rx-box)">'
            f'<rect width="{BOX_WIDTH}" height="{BOX_HEIGHT}" fill="{background}"/>'
            f'<rect y="{BOX_HEIGHT - share:g}" width="{BOX_WIDTH}" height="{share:g}" '
            f'fill="{fill}"/>'
            f'<rect x=".5" y=".5" width="{BOX_WIDTH - 1}" height="{BOX_HEIGHT - 1}" rx="11.5" '
            f'fill="none" stroke="{line}"/>'
            f'<text x="{BOX_WIDTH // 2}" y="28" font-family="{EMOJI_FONTS}" font-size="22">'
            f"{text(reaction['emoji'])}</text>"
            f'<text x="{BOX_WIDTH // 2}" y="45">{text(short_label(reaction["label"]))}</text>'
            f'<text x="{BOX_WIDTH // 2}" y="59" font-size="11">{figure(summary, reaction)}</text>'
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)
