"""A real 3-master Redis Cluster from the redis-server binary the embedded mode uses."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import redis

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
    def __init__(self, base_dir: Path, masters: int = 3):
        self.base_dir = base_dir
        self.ports = [free_cluster_port() for _ in range(masters)]
        self.processes: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, timeout: float = 30.0) -> LocalCluster:
        for port in self.ports:
            data = self.base_dir / str(port)
            data.mkdir(parents=True, exist_ok=True)
            self.processes.append(
                subprocess.Popen(
                    [
                        server_binary(),
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--appendonly",
                        "no",
                        "--save",
                        "",
                        "--maxmemory-policy",
                        "noeviction",
                        "--dir",
                        str(data),
                        "--logfile",
                        "redis.log",
                        "--daemonize",
                        "no",
                    ],  # fmt: skip
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        nodes = [redis.Redis(port=port, socket_timeout=1) for port in self.ports]
        deadline = time.monotonic() + timeout
        for node in nodes:
            while True:
                try:
                    node.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        cli = os.path.join(os.path.dirname(server_binary()), "redis-cli")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        for node in nodes:
            while node.cluster("INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not become ready")
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)
