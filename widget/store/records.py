"""The records the store reads and writes: sites, limits, statistics, and its RateLimited."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace

from ..reactions import (
    DEFAULT_REACTIONS,
    SET_STYLES,
    THUMBS_REACTIONS,
    InvalidField,
    Reaction,
    parse_reaction_set,
)
from .keys import index_key, meta_key, scope
from .scripts import fold_arguments

# The origin placeholder that means "the reactions server's own origin" (the demo site).
SELF_ORIGIN = "self"


@dataclass(frozen=True)
class NamedSet:
    """A reaction set a site offers besides its default one (e.g. `thumbs`: like and
    dislike), embedded with `data-set`. It is counted apart, in its own keyspace (see
    `keys.scope`): one choice per reader per article per set."""

    name: str
    reactions: tuple[Reaction, ...]
    style: str = "percent"  # one of SET_STYLES; "count" is the compact style, showing counts
    retired: tuple[Reaction, ...] = ()

    @property
    def all_reactions(self) -> tuple[Reaction, ...]:
        return self.reactions + self.retired

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "reactions": [r.as_dict() for r in self.reactions],
            "style": self.style,
            "retired": [r.as_dict() for r in self.retired],
        }

    @classmethod
    def from_dict(cls, data: dict) -> NamedSet:
        style = data.get("style", "percent")
        if style not in SET_STYLES:
            raise InvalidField(f"a set's style must be one of {', '.join(SET_STYLES)}")
        return cls(
            name=data["name"],
            reactions=parse_reaction_set(data["reactions"]),
            style=style,
            retired=parse_reaction_set(data.get("retired", [])),
        )


@dataclass(frozen=True)
class Site:
    name: str
    origins: tuple[str, ...]
    reactions: tuple[Reaction, ...] = DEFAULT_REACTIONS
    created: float = 0.0
    # Reactions no longer offered: their votes are kept, not shown as an option.
    retired: tuple[Reaction, ...] = ()
    # Named reaction sets besides the default one, in the order the admin lists them.
    sets: tuple[NamedSet, ...] = ()

    def named_set(self, name: str) -> NamedSet | None:
        """The site's set of that name; None for "" (the default set) or one it lacks."""
        return next((s for s in self.sets if s.name == name), None)

    def for_set(self, name: str) -> Site:
        """The site as its reaction set `name` is counted ("" the default set: the site
        itself): named by the set's scope (`keys.scope`), with the set's reactions, so that
        every store method taking a site or its name counts, reads and lists that set."""
        if not name:
            return self
        named = self.named_set(name)
        if named is None:
            raise InvalidField(f"site '{self.name}' has no reaction set '{name}'")
        return replace(
            self,
            name=scope(self.name, name),
            reactions=named.reactions,
            retired=named.retired,
            sets=(),
        )

    def allows(self, origin: str | None, own_origin: str | None) -> bool:
        """`own_origin`: the server's own origin when the caller has checked that it is
        (security.is_own_origin), for a site that allows `self`; None otherwise."""
        if not origin:
            return False
        return origin in self.origins or (SELF_ORIGIN in self.origins and origin == own_origin)

    @property
    def all_reactions(self) -> tuple[Reaction, ...]:
        return self.reactions + self.retired

    @functools.cached_property
    def vote_keys(self) -> tuple[str, ...]:
        """(index, meta, and `fold_arguments`): the vote script's keys and arguments that
        depend on the site only, built once per record."""
        return (index_key(self.name), meta_key(self.name), *fold_arguments(self.name))

    def to_json(self) -> str:
        return json.dumps(
            {
                "origins": list(self.origins),
                "reactions": [r.as_dict() for r in self.reactions],
                "retired": [r.as_dict() for r in self.retired],
                "created": self.created,
                "sets": [s.as_dict() for s in self.sets],
            }
        )

    @classmethod
    def from_json(cls, name: str, raw: str) -> Site:
        data = json.loads(raw)
        return cls(
            name=name,
            origins=tuple(data.get("origins", ())),
            reactions=parse_reaction_set(data["reactions"])
            if data.get("reactions")
            else DEFAULT_REACTIONS,
            created=float(data.get("created", 0)),
            retired=parse_reaction_set(data.get("retired", [])),
            sets=tuple(NamedSet.from_dict(s) for s in data.get("sets", ())),
        )


# Sites that exist without being registered; `reactions sites add demo …` overrides it.
# The demo offers the seed's compact like/dislike pair too (see /demo/thumbs).
BUILTIN_SITES = {
    "demo": Site(
        name="demo",
        origins=(SELF_ORIGIN,),
        sets=(NamedSet("thumbs", THUMBS_REACTIONS, "count"),),
    )
}


@dataclass(frozen=True)
class Limits:
    """How many votes a client (address + user agent) and an address block may send to a site
    per minute, a site may take per second, how many new articles a site may gain per hour,
    and how many reads and erases of readers' own data an address block may make per minute."""

    per_client_minute: int = 1_000_000
    per_site_second: int = 1_000_000
    new_articles_hour: int = 1_000_000
    per_address_minute: int = 1_000_000
    own_data_per_minute: int = 1_000_000


class RateLimited(Exception):
    def __init__(self, scope: str, retry_after: int, site: str = ""):
        super().__init__(scope)
        self.scope = scope
        self.retry_after = max(1, retry_after)
        self.site = site  # for the log's line about a burst


@dataclass(frozen=True)
class SiteStats:
    site: Site
    total: int
    articles: int
    last: float | None


@dataclass(frozen=True)
class OwnReaction:
    """A reaction a reader has given (or just took back), with its article's title and URL."""

    article: str
    reaction: str
    url: str = ""
    title: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "article": self.article,
            "reaction": self.reaction,
            "url": self.url,
            "title": self.title,
        }


@dataclass(frozen=True)
class ArticleStats:
    article: str
    counts: dict[str, int]
    title: str = ""
    url: str = ""
    first_seen: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())
