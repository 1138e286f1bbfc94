"""Settings from the environment, typed and validated in one place.

Invalid values fail at start-up with a message that names the variable, never later in a
request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from .logs import FORMATS
from .store.connection import seed_nodes

DEFAULTS = {
    "REDIS_URL": "",
    "REACTIONS_DATA_DIR": "var",
    "REACTIONS_SECRET_KEY": "",
    "REACTIONS_APPENDFSYNC": "everysec",
    "REACTIONS_REDIS_PRIORITY": "realtime",
    "REACTIONS_REDIS_TIMEOUT": 0.5,
    "REACTIONS_MAX_BODY_BYTES": 4096,
    "REACTIONS_RETRY_AFTER": 5,
    "REACTIONS_ADMIN_PASSWORD": "",
    "REACTIONS_TRUSTED_PROXIES": 0,
    "REACTIONS_LOGIN_DELAY": 0.25,
    "REACTIONS_RATE_PER_MINUTE": 60,
    "REACTIONS_ADDRESS_RATE_PER_MINUTE": 300,
    "REACTIONS_OWN_DATA_RATE_PER_MINUTE": 30,
    "REACTIONS_LOGIN_FAILURES_GLOBAL": 50,
    "REACTIONS_SITE_RATE_PER_SECOND": 500,
    "REACTIONS_NEW_ARTICLES_PER_HOUR": 500,
    "REACTIONS_PUBLIC_URL": "",
    "REACTIONS_ALLOWED_HOSTS": "localhost,127.0.0.1,[::1]",
    "REACTIONS_STREAMS_PER_CLIENT": 50,
    # An open stream costs a worker about 25 MiB per 1,000 (docs/benchmarks.md, "10,000 live
    # streams"): 10,000 is about 250 MiB per process, two such workers and Redis fit in 1 GiB,
    # and at one event a second each, the most events it writes is 10,000 a second.
    "REACTIONS_STREAMS_PER_PROCESS": 10_000,
    # The events a process writes to its open streams per second, whatever the audience, up
    # to this many streams (beyond, each gets one a second): each article's interval between
    # two events grows with the process's open streams. 5,000 kept votes/s at 0.5-0.9 of the
    # rate with no stream open, 10,000 at 0.37-0.48 (docs/benchmarks.md).
    "REACTIONS_LIVE_WRITES_PER_SECOND": 5_000,
    "REACTIONS_LOG_FORMAT": "plain",
    "REACTIONS_METRICS_TOKEN": "",
}

APPENDFSYNC_CHOICES = ("always", "everysec", "no")
REDIS_PRIORITY_CHOICES = ("realtime", "normal")
LOG_FORMAT_CHOICES = FORMATS
REDIS_SCHEMES = (
    "redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
    "rediss+sentinel",
)  # fmt: skip


class ConfigError(ValueError):
    """A setting has a value the server cannot run with."""


def _number(name: str, raw: object, kind: type, minimum: float, maximum: float):
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _public_url(raw: str) -> str:
    """The address readers' browsers reach this server at, as pasted into embed snippets:
    `https://host[:port][/prefix]`, kept without its trailing slash."""
    parts = urlsplit(raw)
    try:
        parts.port  # noqa: B018 - raises ValueError unless the port is a number up to 65535
        valid = (
            parts.scheme.lower() in ("http", "https")
            and bool(parts.hostname)
            and parts.username is None
            and not parts.query
            and not parts.fragment
            and not raw.endswith(("?", "#"))
            # pasted into an HTML attribute by the snippets
            and not any(c.isspace() or c in "\"'<>`\\" for c in raw)
        )
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            "REACTIONS_PUBLIC_URL must be an absolute http(s) URL such as "
            f"https://reactions.example.com or https://example.com/reactions, got {raw!r}"
        )
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


# A host name or an IP address (IPv6 in brackets), optionally with a port.
HOST_PATTERN = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:[0-9]{1,5})?")


def _allowed_hosts(raw: str) -> tuple[str, ...]:
    """The names a request's Host header may give this server for the demo site's `self`
    origin: `host` (any port) or `host:port`, comma-separated."""
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for host in hosts:
        if not HOST_PATTERN.fullmatch(host):
            raise ConfigError(
                "REACTIONS_ALLOWED_HOSTS must be host names or addresses, with an optional "
                f"port, separated by commas (such as localhost,reactions.lan:8000), got {host!r}"
            )
    return hosts


def load(environ: Mapping[str, str] | None = None, overrides: Mapping | None = None) -> dict:
    """Defaults, then `REACTIONS_*`/`REDIS_URL` from the environment, then overrides."""
    environ = os.environ if environ is None else environ
    settings: dict = dict(DEFAULTS)
    for name in DEFAULTS:
        if environ.get(name, "") != "":
            settings[name] = environ[name]
    settings.update(overrides or {})

    url = settings["REDIS_URL"]
    if url and urlsplit(url).scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"REDIS_URL must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}, "
            f"got {url!r}"
        )
    if "+" in urlsplit(url).scheme:
        try:
            seed_nodes(url)
        except ValueError as error:
            raise ConfigError(
                f"REDIS_URL must name its nodes as host:port[,host:port…]: {error}"
            ) from None
    if settings["REACTIONS_APPENDFSYNC"] not in APPENDFSYNC_CHOICES:
        raise ConfigError(
            f"REACTIONS_APPENDFSYNC must be one of {', '.join(APPENDFSYNC_CHOICES)}, "
            f"got {settings['REACTIONS_APPENDFSYNC']!r}"
        )
    if settings["REACTIONS_REDIS_PRIORITY"] not in REDIS_PRIORITY_CHOICES:
        raise ConfigError(
            f"REACTIONS_REDIS_PRIORITY must be one of {', '.join(REDIS_PRIORITY_CHOICES)}, "
            f"got {settings['REACTIONS_REDIS_PRIORITY']!r}"
        )
    if settings["REACTIONS_LOG_FORMAT"] not in LOG_FORMAT_CHOICES:
        raise ConfigError(
            f"REACTIONS_LOG_FORMAT must be one of {', '.join(LOG_FORMAT_CHOICES)}, "
            f"got {settings['REACTIONS_LOG_FORMAT']!r}"
        )
    settings["REACTIONS_REDIS_TIMEOUT"] = _number(
        "REACTIONS_REDIS_TIMEOUT", settings["REACTIONS_REDIS_TIMEOUT"], float, 0.05, 30
    )
    settings["REACTIONS_MAX_BODY_BYTES"] = _number(
        "REACTIONS_MAX_BODY_BYTES", settings["REACTIONS_MAX_BODY_BYTES"], int, 512, 1 << 20
    )
    settings["REACTIONS_RETRY_AFTER"] = _number(
        "REACTIONS_RETRY_AFTER", settings["REACTIONS_RETRY_AFTER"], int, 1, 3600
    )
    settings["REACTIONS_TRUSTED_PROXIES"] = _number(
        "REACTIONS_TRUSTED_PROXIES", settings["REACTIONS_TRUSTED_PROXIES"], int, 0, 10
    )
    settings["REACTIONS_LOGIN_DELAY"] = _number(
        "REACTIONS_LOGIN_DELAY", settings["REACTIONS_LOGIN_DELAY"], float, 0, 10
    )
    for name in (
        "REACTIONS_RATE_PER_MINUTE",
        "REACTIONS_ADDRESS_RATE_PER_MINUTE",
        "REACTIONS_OWN_DATA_RATE_PER_MINUTE",
        "REACTIONS_LOGIN_FAILURES_GLOBAL",
        "REACTIONS_SITE_RATE_PER_SECOND",
        "REACTIONS_NEW_ARTICLES_PER_HOUR",
    ):
        settings[name] = _number(name, settings[name], int, 1, 10_000_000)
    settings["REACTIONS_STREAMS_PER_CLIENT"] = _number(
        "REACTIONS_STREAMS_PER_CLIENT", settings["REACTIONS_STREAMS_PER_CLIENT"], int, 0, 1_000_000
    )
    settings["REACTIONS_STREAMS_PER_PROCESS"] = _number(
        "REACTIONS_STREAMS_PER_PROCESS",
        settings["REACTIONS_STREAMS_PER_PROCESS"],
        int,
        0,
        1_000_000,
    )
    settings["REACTIONS_LIVE_WRITES_PER_SECOND"] = _number(
        "REACTIONS_LIVE_WRITES_PER_SECOND",
        settings["REACTIONS_LIVE_WRITES_PER_SECOND"],
        int,
        1,
        10_000_000,
    )
    hosts = settings["REACTIONS_ALLOWED_HOSTS"]
    settings["REACTIONS_ALLOWED_HOSTS"] = _allowed_hosts(
        hosts if isinstance(hosts, str) else ",".join(hosts)
    )
    secret = settings["REACTIONS_SECRET_KEY"]
    if secret and len(secret) < 16:
        raise ConfigError("REACTIONS_SECRET_KEY must be at least 16 characters long")
    token = settings["REACTIONS_METRICS_TOKEN"]
    if token and (len(token) < 16 or not token.isascii() or not token.isprintable()):
        raise ConfigError(
            "REACTIONS_METRICS_TOKEN must be at least 16 printable ASCII characters "
            "(such as the output of: openssl rand -hex 32)"
        )
    if settings["REACTIONS_PUBLIC_URL"]:
        settings["REACTIONS_PUBLIC_URL"] = _public_url(settings["REACTIONS_PUBLIC_URL"])
    settings["REACTIONS_DATA_DIR"] = os.path.abspath(settings["REACTIONS_DATA_DIR"])
    return settings
