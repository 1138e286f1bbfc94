"""Pure domain logic: reaction sets, validation, normalization and percentages.

Nothing here does I/O, so every rule can be tested without Redis or a request.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

MAX_SITE_LENGTH = 64
MAX_ARTICLE_LENGTH = 512
MAX_TITLE_LENGTH = 300
# A longer title is refused; one up to this long is shortened to MAX_TITLE_LENGTH.
MAX_TITLE_INPUT_LENGTH = MAX_TITLE_LENGTH * 4
MAX_URL_LENGTH = 2048
MIN_READER_LENGTH = 16
MAX_READER_LENGTH = 128
MAX_BATCH_ARTICLES = 50

SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
READER_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
REACTION_ID = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# C0/C1 control characters and the Unicode line/paragraph separators (as a character class's
# ranges, which the OpenAPI document uses too).
CONTROL_RANGES = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
CONTROL_CHARS = re.compile(f"[{CONTROL_RANGES}]")
# Lone UTF-16 surrogates: JSON's `\\ud800` escape gives Python a string that no UTF-8
# encoder (Redis, the log, the response) can write.
SURROGATES = re.compile(r"[\ud800-\udfff]")


class Reaction(NamedTuple):
    """One reaction a site offers. A named tuple, so a reaction set (a tuple of them) hashes
    in C: sets are cache keys on every vote and read, and a frozen dataclass's generated
    __hash__ runs in Python, a noticeable cost on every one of them."""

    id: str
    emoji: str
    label: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "emoji": self.emoji, "label": self.label}


DEFAULT_REACTIONS: tuple[Reaction, ...] = (
    Reaction("happy", "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}", "Happy"),
    Reaction("sad", "\N{CRYING FACE}", "Sad"),
    Reaction("excited", "\N{GRINNING FACE WITH STAR EYES}", "Excited"),
    Reaction("sleepy", "\N{SLEEPING FACE}", "Sleepy"),
    Reaction("angry", "\N{ANGRY FACE}", "Angry"),
    Reaction("surprise", "\N{FACE WITH OPEN MOUTH}", "Surprise"),
)

# A site may offer named reaction sets besides its default one, each counted apart; this is the
# like/dislike pair a site gets when it adds the set `thumbs` without choosing its reactions.
THUMBS_REACTIONS: tuple[Reaction, ...] = (
    Reaction("like", "\N{THUMBS UP SIGN}", "Like"),
    Reaction("dislike", "\N{THUMBS DOWN SIGN}", "Dislike"),
)
# How a set is shown: each reaction's share of the votes, or (compact) each one's count.
SET_STYLES = ("percent", "count")
SET_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class ReactionsError(Exception):
    """Base of the errors a client can cause; the API turns them into JSON."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidField(ReactionsError):
    code = "invalid_field"


class UnknownSite(ReactionsError):
    status = 403
    code = "unknown_site"


class OriginNotAllowed(ReactionsError):
    status = 403
    code = "origin_not_allowed"


class CsrfFailed(ReactionsError):
    status = 400
    code = "csrf_failed"


class UnsupportedMediaType(ReactionsError):
    status = 415
    code = "unsupported_media_type"


def percentages(counts: list[int]) -> list[int]:
    """Integer percentages by the largest-remainder method.

    They add up to exactly 100 when any count is positive, else all are 0. Ties in the
    remainder go to the reaction listed first, so the result is stable for equal counts.
    """
    total = sum(counts)
    if total <= 0:
        return [0] * len(counts)
    shares = [count * 100 // total for count in counts]
    missing = 100 - sum(shares)
    if missing:
        # Largest remainder first, then the lower index: tuples compare in C, no key function.
        remainders = [-(count * 100 % total) for count in counts]
        ranked = sorted(zip(remainders, range(len(counts)), strict=True))
        for _, index in ranked[:missing]:
            shares[index] += 1
    return shares


def _require_text(name: str, value: object, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidField(f"'{name}' must be a string")
    if len(value) > max_length:
        raise InvalidField(f"'{name}' is longer than {max_length} characters")
    if CONTROL_CHARS.search(value):
        raise InvalidField(f"'{name}' contains control characters")
    _refuse_surrogates(name, value)
    return value


def _refuse_surrogates(name: str, value: str) -> None:
    if SURROGATES.search(value):
        raise InvalidField(
            f"'{name}' contains a lone surrogate (\\ud800-\\udfff), which is not text"
        )


def validate_set_name(value: object) -> str:
    """A named reaction set's name ("" is the default set)."""
    name = _require_text("set", value, 32)
    if name and not SET_NAME.fullmatch(name):
        raise InvalidField(
            "'set' must be 1-32 lowercase letters, digits, '-' or '_', starting with a letter"
        )
    return name


def validate_site(value: object) -> str:
    site = _require_text("site", value, MAX_SITE_LENGTH)
    if not SITE_NAME.fullmatch(site):
        raise InvalidField(
            "'site' must be 1-64 lowercase letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    return site


def normalize_article(value: object) -> str:
    """The stored article id: trimmed; a URL loses its fragment.

    The query stays: on WordPress's default "plain" permalinks (`https://site/?p=123`) it is
    the post's identity. The widget drops the query itself when it falls back to the address
    bar, where it is more often a tracking tag. Scheme and host of a URL are lowercased so
    that `HTTPS://Blog.example/post` and `https://blog.example/post` count as one article.

    The length is checked as given, so that the API's schema can say it; normalizing may add
    the "/" of an empty path. An id that only looks like a URL (`http://[`) stays as it is.
    """
    article = _require_text("article", value, MAX_ARTICLE_LENGTH).strip()
    if not article:
        raise InvalidField("'article' must not be empty")
    if article.lower().startswith(("http://", "https://")):
        try:
            parts = urlsplit(article)
        except ValueError:
            return article
        path = parts.path or "/"
        article = urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))
    return article


def validate_reader(value: object) -> str:
    reader = _require_text("reader", value, MAX_READER_LENGTH)
    if len(reader) < MIN_READER_LENGTH or not READER_TOKEN.fullmatch(reader):
        raise InvalidField(
            f"'reader' must be {MIN_READER_LENGTH}-{MAX_READER_LENGTH} characters of "
            "A-Z, a-z, 0-9, '-' or '_'"
        )
    return reader


def validate_choice(value: object, reaction_set: tuple[Reaction, ...]) -> str | None:
    """The reaction id to set, or None to take the reader's reaction back."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in {r.id for r in reaction_set}:
        allowed = ", ".join(r.id for r in reaction_set)
        raise InvalidField(f"'reaction' must be one of {allowed}, or null")
    return value


def validate_url(value: object) -> str:
    if value is None:
        return ""
    url = _require_text("url", value, MAX_URL_LENGTH)
    if url and not url.lower().startswith(("http://", "https://")):
        raise InvalidField("'url' must be an http(s) URL, or empty")
    return url


def validate_title(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidField("'title' must be a string")
    if len(value) > MAX_TITLE_INPUT_LENGTH:
        raise InvalidField(f"'title' is longer than {MAX_TITLE_INPUT_LENGTH} characters")
    _refuse_surrogates("title", value)
    # Titles are display text: collapse whitespace, drop control characters, and shorten a
    # long one rather than lose the reader's vote over the page's title.
    return " ".join(CONTROL_CHARS.sub(" ", value).split())[:MAX_TITLE_LENGTH]


class Vote(NamedTuple):
    """A vote's fields as the API takes them, each checked: what `post_reaction` asks the
    store to record."""

    article: str
    reader: str
    choice: str | None  # None: take the reader's reaction back
    url: str  # "" when not given
    title: str


def parse_vote(data: dict, reactions: tuple[Reaction, ...]) -> Vote:
    """The vote a request body asks for, against the site's reactions; InvalidField names
    the first field that is wrong. Whether the page may vote, and keep `url`, is the
    request's business (security.py), not the body's."""
    article = normalize_article(data.get("article"))
    reader = validate_reader(data.get("reader"))
    if "reaction" not in data:
        raise InvalidField("'reaction' is required: a reaction id, or null to take it back")
    choice = validate_choice(data["reaction"], reactions)
    return Vote(
        article, reader, choice, validate_url(data.get("url")), validate_title(data.get("title"))
    )


def validate_origin(value: str) -> str:
    """An allowed origin as the browser sends it: scheme://host[:port], no path."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidField(f"origin {value!r} must look like https://blog.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidField(f"origin {value!r} must not have a path, query or fragment")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def parse_reaction_set(items: list[dict]) -> tuple[Reaction, ...]:
    reactions = []
    for item in items:
        if not REACTION_ID.fullmatch(item.get("id", "")):
            raise InvalidField(f"reaction id {item.get('id')!r} is not valid")
        reactions.append(Reaction(item["id"], item["emoji"], item["label"]))
    return tuple(reactions)
