"""Redis key and channel names: the one place that spells them.

Every key of a site carries `{site}` as a Redis Cluster hash tag, so one script can touch an
article's counters, its readers, the site index and the day bucket atomically on one shard.
"""

from __future__ import annotations

SITES_KEY = "rx:sites"
SECRET_KEY = "rx:secret"
# How long a day bucket (`day_key`, `day_total_key`) is kept.
DAY_RETENTION_SECONDS = 400 * 24 * 3600


def counts_key(site: str, article: str) -> str:
    return f"rx:{{{site}}}:a:{article}"


def readers_key(site: str, article: str) -> str:
    return f"rx:{{{site}}}:r:{article}"


def index_key(site: str, reaction: str | None = None) -> str:
    """Articles by total; with a reaction, articles by that reaction's count."""
    return f"rx:{{{site}}}:index" + (f":{reaction}" if reaction else "")


def reaction_index_prefix(site: str) -> str:
    """`index_key(site, reaction)` without the reaction, for the scripts."""
    return index_key(site) + ":"


def meta_key(site: str) -> str:
    return f"rx:{{{site}}}:meta"


def stats_key(site: str) -> str:
    return f"rx:{{{site}}}:stats"


def imported_key(site: str) -> str:
    return f"rx:{{{site}}}:imported"


def day_key(site: str, day: str) -> str:
    """Reactions added that day, per `article|reaction`."""
    return f"rx:{{{site}}}:d:{day}"


def day_total_key(site: str, day: str) -> str:
    """Reactions added that day in the whole site, per reaction."""
    return f"rx:{{{site}}}:dt:{day}"


def pending_key(site: str) -> str:
    """Votes not yet applied to the statistics (see lua/fold.lua): a list of
    `time day previous wanted article` lines (the time in 10 digits; ids and days have no
    space)."""
    return f"rx:{{{site}}}:pending"


def article_numbers_key(site: str) -> str:
    """HASH article number -> article id: the reverse of the number in each article's meta
    record (`"n"`), which is what a reader's own index (`own_key`) keeps."""
    return f"rx:{{{site}}}:ids"


# How much of a reader's hash names its bucket (`own_key`), and how much is its field there.
OWN_BUCKET_CHARS = 4
OWN_FIELD_CHARS = 12


def own_key(site: str, reader: str) -> str:
    """The bucket of a reader's own index: HASH reader field (`own_field`) -> the numbers of
    the articles the reader has a reaction on, comma-separated. Buckets of the reader hash's
    first 4 hex characters (65,536 a site) stay small enough for Redis's compact encoding."""
    return f"rx:{{{site}}}:m:{reader[:OWN_BUCKET_CHARS]}"


def own_field(reader: str) -> str:
    """The reader's field in `own_key`: the next 12 hex characters of its hash (64 bits in
    all). Two readers sharing them would only see each other's articles looked up, never
    listed: every entry is checked against the article's readers hash, full hash and all."""
    return reader[OWN_BUCKET_CHARS : OWN_BUCKET_CHARS + OWN_FIELD_CHARS]


def own_rate_key(site: str, address: str, minute: int) -> str:
    """Reads and erases of readers' own data from one address block that minute."""
    return f"rx:{{{site}}}:ro:{address}:{minute}"


def channel(site: str, article: str) -> str:
    return f"rx:{{{site}}}:ch:{article}"


def client_rate_key(site: str, client: str, minute: int) -> str:
    return f"rx:{{{site}}}:rl:{client}:{minute}"


def address_rate_key(site: str, address: str, minute: int) -> str:
    """Votes from one address block (see security.address_block) to one site that minute."""
    return f"rx:{{{site}}}:ra:{address}:{minute}"


def site_rate_key(site: str, second: int) -> str:
    return f"rx:{{{site}}}:rs:{second}"


def new_articles_key(site: str, hour: int) -> str:
    return f"rx:{{{site}}}:new:{hour}"


def site_channel(site: str) -> str:
    """Where a change of the site's record is announced: the article channel of the empty
    id, which no article has (`normalize_article` refuses it), so that the one pattern
    subscription of a worker hears it too."""
    return channel(site, "")


def channel_pattern() -> str:
    """Every article channel (and `site_channel`) of every site: one subscription per worker
    process."""
    return "rx:{*}:ch:*"


def parse_channel(name: str) -> tuple[str, str]:
    """(site, article) of a channel name made by `channel`."""
    site, _, article = name[len("rx:{") :].partition("}:ch:")
    return site, article


def salt_key(day: str) -> str:
    return f"rx:salt:{day}"


ADMIN_KEY = "rx:admin"


# HASH login id → the time it expires (unix seconds): the admin's open logins.
ADMIN_LOGINS_KEY = "rx:admin:logins"


def login_failures_key(address: str) -> str:
    """Failed logins from one address block (a hash of it, see security.address_fingerprint)."""
    return f"rx:admin:fail:{address}"


# Failed logins from every address together, in the current window.
ALL_LOGIN_FAILURES_KEY = "rx:admin:failures"
