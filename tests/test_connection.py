"""URLs of every topology (rexec/connection.py): parsing, masking, bad input."""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from rexec.connection import connect, is_cluster, mask_password, parse_url
from rexec.errors import ConfigurationError, RedisUnavailableError
from rexec.topology import ClusterTopology, SentinelTopology, free_cluster_port


def test_plain_urls_parse_as_one_server() -> None:
    a = parse_url("redis://:pw@host:6380/2")
    assert (a.kind, a.hosts, a.db, a.password, a.tls) == (
        "single",
        (("host", 6380),),
        2,
        "pw",
        False,
    )
    assert parse_url("rediss://h/0").tls
    assert parse_url("unix:///tmp/r.sock?db=3").db == 3


def test_cluster_urls() -> None:
    a = parse_url("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001")
    assert a.kind == "cluster"
    assert a.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (a.username, a.password, a.tls) == ("u", "p@ss", False)
    assert parse_url("rediss+cluster://h:7000").tls
    assert parse_url("redis+cluster://h").hosts == (("h", 6379),)
    assert parse_url("redis+cluster://[::1]:7000").hosts == (("::1", 7000),)


def test_sentinel_urls() -> None:
    a = parse_url("redis+sentinel://:pw@s1:26379,s2:26380,s3/mymaster/4?sentinel_password=x")
    assert a.kind == "sentinel"
    assert a.hosts == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (a.service, a.db, a.password) == ("mymaster", 4, "pw")
    assert dict(a.options) == {"sentinel_password": "x"}
    assert parse_url("rediss+sentinel://s1/m").tls


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "non-empty"),
        ("localhost:6379", "scheme://"),
        ("http://h:1", "unknown scheme 'http'"),
        ("redis+cluster://h:7000/3", "only database 0"),
        ("redis+cluster://h:notaport", "not a number"),
        ("redis+cluster://h:70000", "out of range"),
        ("redis+cluster://h:1,,h:2", "empty host"),
        ("redis+sentinel://s1:26379", "no service name"),
        ("redis+sentinel://s1:26379/", "no service name"),
        ("redis+sentinel://s1/m/x", "not a number"),
        ("redis+sentinel://s1/m/1/2", "/SERVICE[/DB]"),
        ("redis+sentinel://:secret@s1/m/x", "***"),
    ],
)
def test_bad_urls_say_what_is_wrong_in_one_line(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        connect(url)
    assert why in str(info.value)
    assert "\n" not in str(info.value)
    assert "secret" not in str(info.value)


def test_mask_password_on_every_scheme() -> None:
    assert mask_password("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_password("redis+cluster://u:pw@a:1,b:2") == "redis+cluster://u:***@a:1,b:2"
    assert mask_password("redis+sentinel://:pw@a:1,b:2/m/0") == "redis+sentinel://:***@a:1,b:2/m/0"
    assert mask_password("redis+sentinel://a:1/m") == "redis+sentinel://a:1/m"
    assert mask_password("unix://:pw@/tmp/x.sock") == "unix://:***@/tmp/x.sock"


def test_a_cluster_with_no_reachable_node_is_one_clear_error() -> None:
    port = free_cluster_port(set())
    with pytest.raises(RedisUnavailableError) as info:
        connect(f"redis+cluster://:hidden@127.0.0.1:{port}")
    text = str(info.value)
    assert "no node of the Redis Cluster" in text and "\n" not in text
    assert "hidden" not in text
    assert isinstance(info.value, redis.ConnectionError)  # retried like any connection error


def test_connect_builds_the_clients_of_each_topology(
    redis_cluster: ClusterTopology, redis_sentinel: SentinelTopology
) -> None:
    cluster = connect(redis_cluster.url)
    assert isinstance(cluster, RedisCluster) and is_cluster(cluster)
    assert len(cluster.get_primaries()) == 3  # type: ignore[attr-defined]
    cluster.set("{h12}k", b"v")
    assert cluster.get("{h12}k") == b"v"
    cluster.close()
    sentinel = connect(redis_sentinel.url)
    assert not is_cluster(sentinel)
    sentinel.set("k", b"v")
    assert sentinel.get("k") == b"v"
    assert sentinel.info("replication")["role"] == "master"
    sentinel.close()


def test_an_unknown_sentinel_service_is_a_configuration_error(
    redis_sentinel: SentinelTopology,
) -> None:
    url = redis_sentinel.url.rsplit("/", 1)[0] + "/nosuchservice"
    client = connect(url)
    with pytest.raises(ConfigurationError, match="know no service 'nosuchservice'"):
        client.ping()  # at once: not retried as a failover would be


def test_a_plain_redis_given_as_a_sentinel_is_a_configuration_error(redis_url: str) -> None:
    address = redis_url.split("://", 1)[1].split("/", 1)[0]
    client = connect(f"redis+sentinel://{address}/mymaster")
    with pytest.raises(ConfigurationError, match=f"{address} is not a Sentinel"):
        client.ping()  # at once, in one line, not a raw "unknown command" reply


def test_sentinels_that_do_not_answer_are_a_connection_error() -> None:
    ports = [free_cluster_port(set()) for _ in range(2)]
    client = connect(f"redis+sentinel://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/m")
    client.set_retry(Retry(NoBackoff(), 0))  # connect() waits ~9 s for a failover
    with pytest.raises(redis.ConnectionError, match=r"no Sentinel at .* answers"):
        client.ping()
