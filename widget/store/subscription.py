"""Where a process's live listener holds its pub/sub subscription.

On a single Redis or a Sentinel group it is the client's own pub/sub connection (under
Sentinel it connects to the master the sentinels name at that moment). On a Redis Cluster any
live node will do: on Redis 6 and 7 a PUBLISH, a vote script's too, reaches every node of the
cluster, replicas included. So the listener does not follow a slot (redis-py's ClusterPubSub
would, and after a failover reconnects to the dead master until some command of its own
refreshes the slot map): `Subscriber` asks every known node at once which of them is healthy
and how many pattern subscribers it has, subscribes on the least busy one, and after a loss
starts again from a fresh list of nodes, the lost one last.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass

import redis

from ..internals import cluster_node_client, cluster_socket_timeout

# A node flagged so in CLUSTER NODES is no candidate (`fail?` may be one node's hiccup).
UNUSABLE_FLAGS = {"fail", "noaddr", "handshake"}


def await_confirmation(pubsub: redis.client.PubSub, kind: str, timeout: float) -> None:
    """Reads until Redis confirms a (p)subscribe; raises redis.TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=remaining)
        if message is not None and message["type"] == kind:
            return
    raise redis.TimeoutError(f"Redis did not confirm the {kind} within {timeout} s")


@dataclass
class NodeState:
    """What one cluster node said when asked: its own view of the cluster and its load."""

    healthy: bool
    pattern_subscribers: int
    nodes: list[str]


class Subscriber:
    """Opens the listener's pattern subscription, and after a loss opens it again, on a
    Redis Cluster on another node. One per listener; not shared between threads."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.cluster = isinstance(client, redis.RedisCluster)
        self.node: str | None = None  # "host:port" of the subscription on a cluster
        self._known: list[str] = []

    def subscribe(self, pattern: str, timeout: float) -> redis.client.PubSub:
        """A pub/sub connection whose subscription to `pattern` Redis has confirmed; raises
        a redis.RedisError when no node (or the one Redis) takes it."""
        if not self.cluster:
            return _confirmed(self.client.pubsub(), pattern, timeout)
        lost, self.node = self.node, None
        for address in self.candidates(lost):
            try:
                pubsub = _confirmed(self._node_client(address).pubsub(), pattern, timeout)
            except (redis.RedisError, OSError):
                continue
            self.node = address
            return pubsub
        raise redis.ConnectionError("no node of the cluster took the live subscription")

    def close(self, pubsub: redis.client.PubSub | None) -> None:
        """Ends a subscription this made: its connection is closed, not given back."""
        if pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()

    def candidates(self, lost: str | None = None) -> list[str]:
        """The cluster's nodes in the order to try them: those that answer and say the
        cluster is ok, fewest pattern subscribers first (a tie goes by process id, so the
        workers of one server spread), then those that did not answer, then `lost`."""
        known = self._known or self._nodes_of_client()
        # Not the lost node: it is tried last anyway, and a stalled one would hold up the
        # answer of the others by a Redis timeout.
        states = self._ask([address for address in known if address != lost])
        listed = {address for state in states.values() if state for address in state.nodes}
        if listed:  # as the nodes that answered see the cluster: one added since is tried too
            known = self._known = sorted(listed)
        turn = os.getpid()

        def rank(item: tuple[int, str]) -> tuple[int, int, int]:
            position, address = item
            state = states.get(address)
            if address == lost:
                return (3, 0, 0)
            if state is None:
                return (2, 0, position)
            if not state.healthy:
                return (1, 0, position)
            return (0, state.pattern_subscribers, (position - turn) % len(known))

        return [address for _, address in sorted(enumerate(known), key=rank)]

    def _nodes_of_client(self) -> list[str]:
        return sorted(node.name for node in self.client.get_nodes())

    def _ask(self, addresses: list[str]) -> dict[str, NodeState | None]:
        """Every node at once, each within the Redis timeout: a stalled node costs one
        timeout in all, not one per node. None: the node did not answer."""
        states: dict[str, NodeState | None] = dict.fromkeys(addresses)

        def ask(address: str) -> None:
            node = self._node_client(address)
            try:
                pipe = node.pipeline(transaction=False)
                pipe.execute_command("CLUSTER INFO")
                pipe.execute_command("CLUSTER NODES")
                # Not PUBSUB NUMPAT: since Redis 6.2 it counts patterns, not subscribers.
                pipe.client_list(_type="pubsub")
                info, nodes, clients = pipe.execute(raise_on_error=False)
            except (redis.RedisError, OSError):
                return
            finally:
                node.connection_pool.disconnect()
            if isinstance(info, Exception) or isinstance(nodes, Exception):
                return
            if isinstance(clients, Exception):  # CLIENT LIST not allowed: the tie decides
                clients = []
            host = address.rsplit(":", 1)[0]
            states[address] = NodeState(
                healthy=info.get("cluster_state") == "ok",
                pattern_subscribers=sum(client.get("psub", "0") != "0" for client in clients),
                nodes=[
                    # A node that has not learnt its own address lists it empty.
                    f"{listed.rsplit(':', 1)[0] or host}:{listed.rsplit(':', 1)[1]}"
                    for listed, details in nodes.items()
                    if not UNUSABLE_FLAGS & set(details["flags"].split(","))
                ],
            )

        askers = [threading.Thread(target=ask, args=(a,), daemon=True) for a in addresses]
        for asker in askers:
            asker.start()
        deadline = time.monotonic() + self._timeout() + 0.1
        for asker in askers:
            asker.join(max(0.0, deadline - time.monotonic()))
        return dict(states)  # a node that answers later is not waited for

    def _timeout(self) -> float:
        return cluster_socket_timeout(self.client) or 1.0

    def _node_client(self, address: str) -> redis.Redis:
        """A client of one node, made as the cluster client makes its own (same settings,
        no retry: a node that fails is left for another), but not shared with it."""
        host, port = address.rsplit(":", 1)
        return cluster_node_client(self.client, host, int(port))


def _confirmed(pubsub: redis.client.PubSub, pattern: str, timeout: float):
    try:
        pubsub.psubscribe(pattern)
        # Counts may be cached only once Redis has the subscription: a vote whose message
        # went out before it would leave older counts in the cache until the article's next
        # vote.
        await_confirmation(pubsub, "psubscribe", timeout)
    except BaseException:
        with contextlib.suppress(redis.RedisError, OSError):
            pubsub.close()
        raise
    return pubsub
