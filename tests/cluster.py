"""A real Redis Cluster from the redis-server binary the embedded mode uses: masters, and
optionally a replica of each, which a test may kill (SIGKILL) and bring back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import key_slot

from widget.embedded_redis import server_binary


def free_cluster_port() -> int:
    """A port that is free, and whose cluster bus port (+10000) is free too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class LocalCluster:
    """`masters` masters, each with `replicas` replicas. `node_timeout` (milliseconds) is
    Redis's cluster-node-timeout: how long a master must be unreachable before its replica
    takes over. Slots whose master is down do not stop the others
    (cluster-require-full-coverage no), as the README advises."""

    def __init__(
        self, base_dir: Path, masters: int = 3, replicas: int = 0, node_timeout: int = 2000
    ):
        self.base_dir = base_dir
        self.masters = masters
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.ports = [free_cluster_port() for _ in range(masters * (1 + replicas))]
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """Seeded from one node."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def seeds_url(self) -> str:
        """Seeded from every node: the client starts while any of them answers."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def _spawn(self, port: int) -> None:
        data = self.base_dir / str(port)
        data.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                server_binary(),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout),
                "--cluster-require-full-coverage", "no",
                # Redis's own rule: a replica whose link to its master is down takes over
                # whatever the link's age (a SIGKILL'd master's replica always may).
                "--cluster-replica-validity-factor", "0",
                "--appendonly", "no",
                "--save", "",
                "--maxmemory-policy", "noeviction",
                "--dir", str(data),
                "--logfile", "redis.log",
                "--daemonize", "no",
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def start(self, timeout: float = 60.0) -> LocalCluster:
        for port in self.ports:
            self._spawn(port)
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait_answers(port, deadline)
        cli = os.path.join(os.path.dirname(server_binary()), "redis-cli")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        self.wait_healthy(timeout)
        return self

    def _wait_answers(self, port: int, deadline: float) -> None:
        node = self.node(port)
        while True:
            try:
                node.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def alive(self) -> list[int]:
        return [port for port, process in self.processes.items() if process.poll() is None]

    def slots(self) -> list[tuple[int, int, int, list[int]]]:
        """(first slot, last slot, master port, replica ports) as a live node sees them."""
        for port in self.alive():
            try:
                ranges = self.node(port).cluster("SLOTS")
            except redis.RedisError:
                continue
            return [
                (first, last, master[1], [replica[1] for replica in replicas])
                for first, last, master, *replicas in ranges
            ]
        raise RuntimeError("no node of the cluster answers")

    def master_of(self, key: str) -> int:
        """The port of the master that holds `key`'s slot (a site name: its hash tag)."""
        slot = key_slot(key.encode())
        for first, last, master, _ in self.slots():
            if first <= slot <= last:
                return master
        raise AssertionError(f"no master for slot {slot}")

    def site_per_master(self, prefix: str = "shard") -> dict[int, str]:
        """One site name per master, {master port: name}: the slot of the name's hash tag
        (every key of a site carries it) is that master's."""
        ranges = self.slots()
        chosen: dict[int, str] = {}
        for number in range(10_000):
            name, slot = f"{prefix}{number}", key_slot(f"{prefix}{number}".encode())
            master = next(master for first, last, master, _ in ranges if first <= slot <= last)
            chosen.setdefault(master, name)
            if len(chosen) == len({master for _, _, master, _ in ranges}):
                return chosen
        raise AssertionError("could not place a site on every master")

    def master_ports(self) -> list[int]:
        return sorted({master for _, _, master, _ in self.slots()})

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Every live node says the cluster is ok and flags no live node as failing, every
        slot has a live master, and every replica is in sync with it."""
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become healthy")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        alive = set(self.alive())
        try:
            for port in alive:
                if self.node(port).cluster("INFO").get("cluster_state") != "ok":
                    return False
                # A live node some node still flags as failing (a stopped one that resumed)
                # is one a client may still keep off.
                for address, details in self.node(port).cluster("NODES").items():
                    flagged = {"fail", "fail?"} & set(details["flags"].split(","))
                    if flagged and int(address.rsplit(":", 1)[1]) in alive:
                        return False
            ranges = self.slots()
            if sum(last - first + 1 for first, last, *_ in ranges) != 16384:
                return False
            masters = {master for _, _, master, _ in ranges}
            if not masters <= alive:
                return False
            expected = {port for port in alive if port not in masters}
            replicas = {replica for *_, listed in ranges for replica in listed}
            if not expected <= replicas:
                return False
            for port in expected:
                info = self.node(port).info("replication")
                if info.get("master_link_status") != "up":
                    return False
            return True
        except redis.RedisError:
            return False

    def kill(self, port: int) -> None:
        """SIGKILL: the node dies mid-write, as in a crash."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def restart(self, port: int, timeout: float = 60.0) -> None:
        """Bring a killed node back (it rejoins, as a replica if it was failed over) and wait
        for the cluster to be healthy again."""
        self._spawn(port)
        self._wait_answers(port, time.monotonic() + timeout)
        self.wait_healthy(timeout)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            process.wait(10)


class LocalSentinel:
    """A Sentinel-managed Redis: one master, `replicas` replicas and `sentinels` sentinels
    (quorum: a majority of them) watching it as the service `name`. `down_after` (ms) is
    Sentinel's down-after-milliseconds: how long the master must be unreachable before the
    sentinels fail it over."""

    def __init__(
        self,
        base_dir: Path,
        replicas: int = 1,
        sentinels: int = 3,
        down_after: int = 2000,
        name: str = "reactions",
    ):
        self.base_dir = base_dir
        self.name = name
        self.down_after = down_after
        self.redis_ports = [free_cluster_port() for _ in range(1 + replicas)]
        self.sentinel_ports = [free_cluster_port() for _ in range(sentinels)]
        self.quorum = sentinels // 2 + 1
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{seeds}/{self.name}"

    def _spawn_redis(self, port: int, master: int | None) -> None:
        data = self.base_dir / str(port)
        data.mkdir(parents=True, exist_ok=True)
        replica = ["--replicaof", "127.0.0.1", str(master)] if master else []
        self.processes[port] = subprocess.Popen(
            [
                server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                "--appendonly", "no", "--save", "", "--dir", str(data),
                "--logfile", "redis.log", *replica,
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def _spawn_sentinel(self, port: int) -> None:
        data = self.base_dir / f"sentinel-{port}"
        data.mkdir(parents=True, exist_ok=True)
        config = data / "sentinel.conf"  # Sentinel rewrites its own file
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {data}\nlogfile sentinel.log\n"
            f"sentinel monitor {self.name} 127.0.0.1 {self.redis_ports[0]} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.name} {self.down_after}\n"
            f"sentinel failover-timeout {self.name} 3000\n"
        )
        self.processes[port] = subprocess.Popen(
            [server_binary(), str(config), "--sentinel"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def start(self, timeout: float = 60.0) -> LocalSentinel:
        master, *replicas = self.redis_ports
        self._spawn_redis(master, None)
        for port in replicas:
            self._spawn_redis(port, master)
        # Sentinels first learn the replicas from the master's INFO when they connect, then
        # every 10 s: start them once the master lists every replica.
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.node(master).info("replication").get("connected_slaves") == len(replicas):
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas did not connect to the master")
            time.sleep(0.05)
        for port in self.sentinel_ports:
            self._spawn_sentinel(port)
        self.wait_healthy(timeout)
        return self

    def master(self) -> int:
        """The master's port, as the sentinels name it (the first that answers)."""
        for port in self.sentinel_ports:
            if self.processes[port].poll() is None:
                try:
                    address = self.node(port).sentinel_get_master_addr_by_name(self.name)
                except redis.RedisError:
                    continue
                if address:
                    return int(address[1])
        raise RuntimeError("no sentinel names a master")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Every sentinel names the same live master, knows the others, and every other live
        Redis is its replica, in sync."""
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError("the Sentinel setup did not become healthy")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            masters = set()
            for port in self.sentinel_ports:
                state = self.node(port).sentinel_master(self.name)
                if state.get("num-other-sentinels") != len(self.sentinel_ports) - 1:
                    return False
                # A sentinel learns the replicas from the master's INFO every 10 s; until then
                # a failover finds no replica to promote ("-failover-abort-no-good-slave").
                live_replicas = sum(self.processes[p].poll() is None for p in self.redis_ports) - 1
                if state.get("num-slaves") != live_replicas:
                    return False
                masters.add(int(state["port"]))
            if len(masters) != 1:
                return False
            (master,) = masters
            if self.processes[master].poll() is not None:
                return False
            if self.node(master).info("replication").get("role") != "master":
                return False
            for port in self.redis_ports:
                if port != master and self.processes[port].poll() is None:
                    info = self.node(port).info("replication")
                    if info.get("master_port") != master or info.get("master_link_status") != "up":
                        return False
            return True
        except (redis.RedisError, KeyError, ValueError):
            return False

    def kill(self, port: int) -> None:
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def restart(self, port: int, timeout: float = 60.0) -> None:
        """Bring a killed Redis back as a replica of the current master."""
        self._spawn_redis(port, self.master())
        self.wait_healthy(timeout)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            process.wait(10)
