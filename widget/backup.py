"""Backups with Redis's own persistence: a snapshot (BGSAVE) copied out of a running Redis,
and a data directory rebuilt from one for the embedded Redis.

A backup is an RDB file, the format Redis itself writes and loads; restoring one replaces the
data directory's append-only file, which is what the embedded Redis loads on start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import redis

from .embedded_redis import EmbeddedRedis, EmbeddedRedisError, answers, socket_url

RDB_MAGIC = b"REDIS"
AOF_NAME = "appendonly.aof"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
# Redis answers no command while it loads its data: a large backup takes a while.
LOAD_TIMEOUT = 3600.0


class BackupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Snapshot:
    path: str  # the RDB file Redis wrote, as Redis names it
    keys: int  # keys in the data set at the moment of the snapshot


def is_local(url: str) -> bool:
    """Whether REDIS_URL names one Redis on this machine, whose files a backup can read."""
    parts = urlsplit(url)
    return parts.scheme == "unix" or (
        parts.scheme in ("redis", "rediss") and parts.hostname in LOCAL_HOSTS
    )


def is_rdb(path: str) -> bool:
    with open(path, "rb") as file:
        return file.read(len(RDB_MAGIC)) == RDB_MAGIC


def persistence(client: redis.Redis) -> dict:
    return client.info("persistence")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise BackupError(f"Redis did not finish {what} within {timeout:.0f} s")
        time.sleep(0.05)
    return value


def snapshot(client: redis.Redis, timeout: float = 3600.0) -> Snapshot:
    """Have Redis write a snapshot of its data (BGSAVE: a fork, so it keeps serving) and wait
    until it is complete on disk.

    Redis runs one background save or AOF rewrite at a time: while another runs, wait for it
    and ask again. DBSIZE and BGSAVE go in one transaction, so the key count is the
    snapshot's."""
    directory = client.config_get("dir")["dir"]
    filename = client.config_get("dbfilename")["dbfilename"]
    deadline = time.monotonic() + timeout
    while True:
        transaction = client.pipeline(transaction=True)
        transaction.dbsize()
        transaction.execute_command("BGSAVE")  # not redis-py's bgsave(): that one schedules
        try:
            keys, _ = transaction.execute()
            break
        except redis.ResponseError as error:
            state = persistence(client)
            if not (state["rdb_bgsave_in_progress"] or state["aof_rewrite_in_progress"]):
                raise BackupError(f"Redis refused to save a snapshot: {error}") from None
        wait_for(
            lambda: (
                not any(
                    persistence(client)[busy]
                    for busy in ("rdb_bgsave_in_progress", "aof_rewrite_in_progress")
                )
            ),
            deadline - time.monotonic(),
            "its other background save",
        )
    # BGSAVE forks before it answers: once no save is in progress, ours has ended.
    state = wait_for(
        lambda: (s := persistence(client))["rdb_bgsave_in_progress"] == 0 and s,
        deadline - time.monotonic(),
        "the snapshot",
    )
    if state["rdb_last_bgsave_status"] != "ok":
        raise BackupError("Redis could not write its snapshot: see its log (disk full?)")
    return Snapshot(os.path.join(directory, filename), keys)


def backup_path(path: str, now: datetime | None = None) -> str:
    """PATH itself, or a new file named with the time (UTC) when PATH is a directory."""
    if os.path.isdir(path):
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        return os.path.join(path, f"reactions-{stamp}.rdb")
    return path


def fsync_directory(directory: str) -> None:
    """A rename lasts a power cut only once its directory is on disk too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_atomically(source: str, target: str) -> int:
    """Copy `source` to `target` through a temporary file in the target's directory, on disk
    before it takes the target's name: `target` is the old file or the whole new one, never
    half of one. The copy is readable by its owner only (it holds the server secret).
    Returns its size."""
    directory = os.path.dirname(os.path.abspath(target))
    fd, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory
    )
    try:
        with open(source, "rb") as original, os.fdopen(fd, "wb") as copy:
            shutil.copyfileobj(original, copy, 1 << 20)
            copy.flush()
            os.fsync(copy.fileno())
            size = copy.tell()
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_directory(directory)
    return size


def key_counts(client: redis.Redis) -> tuple[int, int]:
    """(keys, keys with a time to live) of database 0."""
    db = client.info("keyspace").get("db0", {})
    return db.get("keys", 0), db.get("expires", 0)


def log_tail(data_dir: str, lines: int = 3) -> str:
    """The last lines Redis logged, without their pid and time."""
    try:
        with open(os.path.join(data_dir, "redis.log"), errors="replace") as log:
            tail = log.readlines()[-lines:]
            return " / ".join(line.split(" # ", 1)[-1].strip() for line in tail)
    except OSError:
        return "no log"


def restore(rdb: str, data_dir: str, appendfsync: str = "everysec") -> tuple[int, str | None]:
    """Make `data_dir` hold exactly the data of the backup `rdb` for the embedded Redis,
    which must not be running. Returns (keys restored, where the previous AOF was kept).

    The embedded Redis runs with appendonly yes and so loads its AOF, never an RDB. Redis
    itself turns the RDB into an AOF: in a staging directory inside `data_dir`, it loads the
    RDB with appendonly off, then `CONFIG SET appendonly yes` writes the whole data set as
    a new AOF. That AOF is loaded once more the way the server will load it, then renamed
    into place. Until then `data_dir` is left as it was."""
    if not is_rdb(rdb):
        raise BackupError(
            f"{rdb} is not a Redis backup (an RDB file starts with 'REDIS'); nothing changed"
        )
    if answers(socket_url(data_dir)):
        raise BackupError(
            f"a Redis serves {data_dir}: stop the server using this REACTIONS_DATA_DIR "
            "first; nothing changed"
        )
    os.makedirs(data_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".r", dir=data_dir)
    try:
        shutil.copyfile(rdb, os.path.join(staging, "dump.rdb"))
        keys, expiring = rewrite_as_aof(staging)
        check = EmbeddedRedis(staging, appendfsync).start(LOAD_TIMEOUT)
        try:
            loaded, _ = key_counts(redis.Redis(unix_socket_path=check.socket))
        finally:
            check.stop()
        # Keys with a time to live may expire between the two loads; no other may go.
        if not keys - expiring <= loaded <= keys:
            raise BackupError(
                f"the rewritten data holds {loaded} keys, the backup {keys}; nothing changed"
            )
        kept = None
        current = os.path.join(data_dir, AOF_NAME)
        if os.path.exists(current) and os.path.getsize(current) > 0:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = f"{current}.before-restore-{stamp}"
            os.link(current, kept)  # a second name, so `current` is never missing
        os.replace(os.path.join(staging, AOF_NAME), current)
        fsync_directory(data_dir)
        return loaded, kept
    except EmbeddedRedisError:
        raise BackupError(
            f"Redis cannot load {rdb}: {log_tail(staging, 1)}; nothing changed"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def rewrite_as_aof(staging: str) -> tuple[int, int]:
    """Load `staging`/dump.rdb into a Redis without AOF, have it write its data as
    `staging`/appendonly.aof, stop it. Returns (keys, keys with a time to live)."""
    server = EmbeddedRedis(staging, persistent=False).start(LOAD_TIMEOUT)
    try:
        client = redis.Redis(unix_socket_path=server.socket)
        counts = key_counts(client)
        # Starts the AOF rewrite at once (a fork), or schedules it while another child runs.
        client.config_set("appendonly", "yes")
        state = wait_for(
            lambda: (
                (s := persistence(client))["aof_rewrite_in_progress"] == 0
                and s["aof_rewrite_scheduled"] == 0
                and s
            ),
            3600.0,
            "writing the append-only file",
        )
        if state["aof_last_bgrewrite_status"] != "ok":
            raise BackupError(f"Redis could not write the append-only file: {log_tail(staging)}")
    finally:
        server.stop()
    return counts
