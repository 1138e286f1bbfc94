"""What every `reactions` command shares: the validated settings and the store it works on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click
import redis

from . import config, logs
from .embedded_redis import (
    EmbeddedRedis,
    EmbeddedRedisError,
    answers,
    socket_url,
)
from .store import Store, connect


def settings() -> dict:
    """The validated settings; the command's log lines take their format from them."""
    try:
        conf = config.load()
    except config.ConfigError as error:
        raise click.ClickException(str(error)) from None
    logs.setup(conf["REACTIONS_LOG_FORMAT"])
    return conf


@contextlib.contextmanager
def open_store() -> Iterator[Store]:
    """The configured Redis; else the embedded one of the data directory, running or not."""
    conf = settings()
    url = conf["REDIS_URL"] or socket_url(conf["REACTIONS_DATA_DIR"])
    embedded = None
    try:
        if not conf["REDIS_URL"] and not answers(url):
            embedded = EmbeddedRedis(conf["REACTIONS_DATA_DIR"], conf["REACTIONS_APPENDFSYNC"])
            embedded.start()
        yield Store(connect(url, conf["REACTIONS_REDIS_TIMEOUT"] * 4), conf["REACTIONS_SECRET_KEY"])
    except EmbeddedRedisError as error:
        raise click.ClickException(str(error)) from None
    except redis.RedisError as error:
        raise click.ClickException(f"cannot reach Redis at {url}: {error}") from None
    finally:
        if embedded:
            embedded.stop()
