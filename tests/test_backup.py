"""An operator backs up the data with `reactions backup` while the server serves, and brings
it back with `reactions restore`: into a fresh data directory, every count, reader choice and
site is there; what cannot be restored changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import pytest
import redis

from tests.servers import NO_LIMITS, Server, wait_until
from widget.embedded_redis import EmbeddedRedis, socket_url
from widget.store import Site, Store, connect

# Many votes from one address: no rate limit may refuse one.
LIMITS_OFF = {name: str(value) for name, value in NO_LIMITS.items()}
READERS = [(f"reader-{n:03d}-zzzzzzzzzzzz", ("happy", "sad", "excited")[n % 3]) for n in range(12)]


def reactions(data_dir, *args, **env) -> subprocess.CompletedProcess:
    """The `reactions` command, as an operator runs it on the server's machine."""
    return subprocess.run(
        [sys.executable, "-m", "widget.cli", *args],
        env={**os.environ, "REACTIONS_DATA_DIR": str(data_dir), "REDIS_URL": "", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def files(data_dir) -> dict[str, bytes]:
    return {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
    }


class Voters(threading.Thread):
    """Votes from new readers, one after the other, until stopped: `sent` counts the votes
    sent, `counted` those the server acknowledged."""

    def __init__(self, server: Server, article: str):
        super().__init__(daemon=True)
        self.server, self.article = server, article
        self.sent = self.counted = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.sent += 1
            self.server.vote(f"voter-{self.sent:06d}-zzzzzzzzzzzz", "happy", self.article)
            self.counted += 1

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)


def test_a_backup_made_while_votes_come_in_restores_every_count_choice_and_site(tmp_path):
    served_dir, backups, fresh = tmp_path / "served", tmp_path / "backups", tmp_path / "fresh"
    backups.mkdir()
    served = Server(served_dir, **LIMITS_OFF).start()
    try:
        Store(connect(socket_url(served_dir), 5.0)).save_site(
            Site("blog", ("https://blog.example.com",))
        )
        for reader, reaction in READERS:
            served.vote(reader, reaction, article="kept")
        kept = served.counts("kept")
        voters = Voters(served, "busy")
        voters.start()
        wait_until(lambda: voters.counted >= 5)
        counted_before = voters.counted
        made = reactions(served_dir, "backup", str(backups))
        sent_by_then = voters.sent
        wait_until(lambda: voters.counted >= sent_by_then + 5)  # the server kept serving
        voters.stop()
    finally:
        served.stop()
    assert made.returncode == 0, made.stderr
    (backup,) = backups.iterdir()
    assert re.fullmatch(r"reactions-\d{8}T\d{6}Z\.rdb", backup.name)
    assert f"{backup} ({backup.stat().st_size} bytes, " in made.stdout

    restored = reactions(fresh, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    server = Server(fresh, **LIMITS_OFF).start()
    try:
        assert server.counts("kept") == kept
        assert counted_before <= sum(server.counts("busy").values()) <= sent_by_then
        reader, reaction = READERS[0]
        changed = server.vote(reader, "sleepy", article="kept")
        listed = reactions(fresh, "sites", "list")
    finally:
        server.stop()
    after = {r["id"]: r["count"] for r in changed["reactions"]}
    assert after == kept | {reaction: kept[reaction] - 1, "sleepy": kept["sleepy"] + 1}
    assert "blog\thttps://blog.example.com" in listed.stdout


def test_restoring_over_a_served_data_directory_is_refused(tmp_path):
    served = Server(tmp_path / "served", **LIMITS_OFF).start()
    try:
        served.vote(*READERS[0])
        made = reactions(tmp_path / "served", "backup", str(tmp_path / "backup.rdb"))
        served.vote(*READERS[1])
        counts = served.counts()
        refused = reactions(tmp_path / "served", "restore", str(tmp_path / "backup.rdb"))
        assert served.counts() == counts
    finally:
        served.stop()
    assert made.returncode == 0, made.stderr
    assert refused.returncode == 1
    assert "stop the server" in refused.stderr and "nothing changed" in refused.stderr


@pytest.fixture
def data_and_backup(tmp_path):
    """A data directory holding a site, no server running, and a backup of it."""
    data = tmp_path / "data"
    added = reactions(data, "sites", "add", "blog", "--origin", "https://blog.example.com")
    assert added.returncode == 0, added.stderr
    made = reactions(data, "backup", str(tmp_path / "backup.rdb"))
    assert made.returncode == 0, made.stderr
    return data, (tmp_path / "backup.rdb").read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        lambda rdb: b"hello, this is not a backup\n",
        lambda rdb: b"",
        lambda rdb: b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n",  # an append-only file
        lambda rdb: rdb[: len(rdb) // 2],  # a backup cut short
    ],
    ids=["text", "empty", "aof", "truncated"],
)
def test_a_file_that_is_not_a_whole_backup_is_refused_and_changes_nothing(
    tmp_path, data_and_backup, damage
):
    data, rdb = data_and_backup
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(damage(rdb))
    before = files(data)
    refused = reactions(data, "restore", str(bad))
    assert refused.returncode == 1
    assert "nothing changed" in refused.stderr
    assert files(data) == before
    assert "blog\thttps://blog.example.com" in reactions(data, "sites", "list").stdout


def test_a_backup_of_an_empty_store_restores_empty(tmp_path, data_and_backup):
    data, _ = data_and_backup
    made = reactions(tmp_path / "empty", "backup", str(tmp_path / "empty.rdb"))
    assert made.returncode == 0, made.stderr
    assert "0 keys" in made.stdout
    restored = reactions(data, "restore", str(tmp_path / "empty.rdb"))
    assert restored.returncode == 0, restored.stderr
    assert "previous data is kept" in restored.stdout
    with EmbeddedRedis(str(data)) as embedded:
        assert redis.Redis(unix_socket_path=embedded.socket).dbsize() == 0


def test_a_redis_url_on_this_machine_is_backed_up_into_a_data_directory(
    tmp_path, redis_server, redis_client
):
    Store(redis_client).save_site(Site("blog", ("https://blog.example.com",)))
    made = reactions(tmp_path, "backup", str(tmp_path / "backup.rdb"), REDIS_URL=redis_server.url)
    assert made.returncode == 0, made.stderr
    restored = reactions(tmp_path / "data", "restore", str(tmp_path / "backup.rdb"))
    assert restored.returncode == 0, restored.stderr
    assert "blog\thttps://blog.example.com" in reactions(tmp_path / "data", "sites", "list").stdout


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis.example.com:6379/0",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/reactions",
    ],
)
def test_a_remote_redis_is_left_to_its_operator(tmp_path, url):
    refused = reactions(tmp_path, "backup", str(tmp_path), REDIS_URL=url)
    assert refused.returncode == 1
    assert "not here" in refused.stderr and "Nothing was written" in refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_restore_fills_only_the_embedded_redis(tmp_path, data_and_backup):
    data, _ = data_and_backup
    before = files(data)
    backup = str(tmp_path / "backup.rdb")
    refused = reactions(data, "restore", backup, REDIS_URL="redis://127.0.0.1:1")
    assert refused.returncode == 1
    assert "REDIS_URL is set" in refused.stderr
    assert files(data) == before
