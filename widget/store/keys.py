"""Redis key and channel names: the one place that spells them.

Every key of a site carries `{site}` as a Redis Cluster hash tag, so one script can touch an
article's counters, its readers, the site index and the day bucket atomically on one shard.

A site's named reaction set (e.g. `thumbs`, beside its default set) is counted apart in a
keyspace of its own inside the site's slot: every function below takes, in place of a site,
the set's scope `site/set` (see `scope`), and spells `rx:{site}:s/set:…` where the default set
has `rx:{site}:…`. So every script, index, day bucket, statistic and reader's own index works
for a named set as it does for the default one, and one choice per reader per article per set
follows. Site names cannot contain "/" (`validate_site`), and no key of the default set starts
with `s/`.
"""

from __future__ import annotations

SITES_KEY = "rx:sites"
SECRET_KEY = "rx:secret"
# How long a day bucket (`day_key`, `day_total_key`) is kept.
DAY_RETENTION_SECONDS = 400 * 24 * 3600


# The separator of a scope: a site name never contains it.
SCOPE_SEPARATOR = "/"


def scope(site: str, reaction_set: str = "") -> str:
    """What the key functions take for the site's reaction set `reaction_set` ("" the default
    set, whose scope is the site's name)."""
    return f"{site}{SCOPE_SEPARATOR}{reaction_set}" if reaction_set else site


def split_scope(name: str) -> tuple[str, str]:
    """(site, reaction set) of a scope; the set is "" for the default set."""
    site, _, reaction_set = name.partition(SCOPE_SEPARATOR)
    return site, reaction_set


def _prefix(site: str) -> str:
    """`rx:{site}:`, or `rx:{site}:s/set:` for a named set's scope."""
    if SCOPE_SEPARATOR not in site:
        return f"rx:{{{site}}}:"
    name, _, reaction_set = site.partition(SCOPE_SEPARATOR)
    return f"rx:{{{name}}}:s/{reaction_set}:"


def _site_prefix(site: str) -> str:
    """`rx:{site}:` for a site or any of its scopes: the rate limits are the site's, whatever
    the set."""
    return f"rx:{{{split_scope(site)[0]}}}:"


def counts_key(site: str, article: str) -> str:
    return f"{_prefix(site)}a:{article}"


def readers_key(site: str, article: str) -> str:
    return f"{_prefix(site)}r:{article}"


def index_key(site: str, reaction: str | None = None) -> str:
    """Articles by total; with a reaction, articles by that reaction's count."""
    return f"{_prefix(site)}index" + (f":{reaction}" if reaction else "")


def reaction_index_prefix(site: str) -> str:
    """`index_key(site, reaction)` without the reaction, for the scripts."""
    return index_key(site) + ":"


def meta_key(site: str) -> str:
    return f"{_prefix(site)}meta"


def stats_key(site: str) -> str:
    return f"{_prefix(site)}stats"


def imported_key(site: str) -> str:
    return f"{_prefix(site)}imported"


def day_key(site: str, day: str) -> str:
    """Reactions added that day, per `article|reaction`."""
    return f"{_prefix(site)}d:{day}"


def day_total_key(site: str, day: str) -> str:
    """Reactions added that day in the whole site, per reaction."""
    return f"{_prefix(site)}dt:{day}"


def pending_key(site: str) -> str:
    """Votes not yet applied to the statistics (see lua/fold.lua): a list of
    `time day previous wanted article` lines (the time in 10 digits; ids and days have no
    space)."""
    return f"{_prefix(site)}pending"


def article_numbers_key(site: str) -> str:
    """HASH article number -> article id: the reverse of the number in each article's meta
    record (`"n"`), which is what a reader's own index (`own_key`) keeps."""
    return f"{_prefix(site)}ids"


# How much of a reader's hash names its bucket (`own_key`), and how much is its field there.
OWN_BUCKET_CHARS = 4
OWN_FIELD_CHARS = 12


def own_key(site: str, reader: str) -> str:
    """The bucket of a reader's own index: HASH reader field (`own_field`) -> the numbers of
    the articles the reader has a reaction on, comma-separated. Buckets of the reader hash's
    first 4 hex characters (65,536 a site) stay small enough for Redis's compact encoding."""
    return f"{_prefix(site)}m:{reader[:OWN_BUCKET_CHARS]}"


def own_field(reader: str) -> str:
    """The reader's field in `own_key`: the next 12 hex characters of its hash (64 bits in
    all). Two readers sharing them would only see each other's articles looked up, never
    listed: every entry is checked against the article's readers hash, full hash and all."""
    return reader[OWN_BUCKET_CHARS : OWN_BUCKET_CHARS + OWN_FIELD_CHARS]


def own_rate_key(site: str, address: str, minute: int) -> str:
    """Reads and erases of readers' own data from one address block that minute."""
    return f"{_site_prefix(site)}ro:{address}:{minute}"


def channel(site: str, article: str) -> str:
    return f"{_prefix(site)}ch:{article}"


def client_rate_key(site: str, client: str, minute: int) -> str:
    return f"{_site_prefix(site)}rl:{client}:{minute}"


def address_rate_key(site: str, address: str, minute: int) -> str:
    """Votes from one address block (see security.address_block) to one site that minute."""
    return f"{_site_prefix(site)}ra:{address}:{minute}"


def site_rate_key(site: str, second: int) -> str:
    return f"{_site_prefix(site)}rs:{second}"


def new_articles_key(site: str, hour: int) -> str:
    return f"{_site_prefix(site)}new:{hour}"


def site_channel(site: str) -> str:
    """Where a change of the site's record is announced: the article channel of the empty
    id, which no article has (`normalize_article` refuses it), so that the one pattern
    subscription of a worker hears it too."""
    return channel(site, "")


def site_channels_prefix(site: str) -> str:
    """What every channel of the site and of its named sets starts with (`site_channel`
    too), and no channel of another site: site names have no "}"."""
    return _site_prefix(site)


def channel_pattern() -> str:
    """Every article channel (and `site_channel`) of every site and reaction set: one
    subscription per worker process."""
    return "rx:{*:ch:*"


def parse_channel(name: str) -> tuple[str, str]:
    """(scope, article) of a channel name made by `channel`: site and set names have no ":",
    so the first ":ch:" ends the scope."""
    head, _, article = name.partition(":ch:")
    site, _, rest = head[len("rx:{") :].partition("}")
    return (scope(site, rest[len(":s/") :]) if rest else site), article


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
