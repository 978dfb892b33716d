"""Redis URLs and the clients made from them: the one place that knows both.

Every URL rexec takes (``App``, every command, the worker, the cockpit, check, demo,
bench) is one of:

- ``redis://[[user]:password@]host[:port][/db][?options]``, ``rediss://…`` (TLS) and
  ``unix://[[user]:password@]/path?db=N``: one Redis server (redis-py's own forms);
- ``redis+cluster://[[user]:password@]host:port[,host:port…][?options]`` and
  ``rediss+cluster://…``: a Redis Cluster, given by one or more seed nodes (the client
  discovers the others and follows slot moves and failovers);
- ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db][?options]``
  and ``rediss+sentinel://…``: the master of ``service`` as the Sentinels at those
  addresses name it, asked again on every new connection (so a failover is followed).
  The password and TLS are those of the Redis servers; the Sentinels get the same TLS
  and, when given, ``?sentinel_password=…`` (else none).

Options in the query are redis-py's own (``ssl_cert_reqs``, ``socket_timeout``, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlencode

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url as redis_parse_url
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from rexec.errors import ConfigurationError, RedisUnavailableError

__all__ = [
    "RedisAddress",
    "connect",
    "connect_async",
    "is_cluster",
    "mask_password",
    "node_client",
    "parse_url",
]

SINGLE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
# A cluster client (and a Sentinel one, while the Sentinels name no master yet) retries
# one command for about 9 s (0.05, 0.1, 0.2, 0.4, then 0.5 s
# apart), re-reading the slot map after each connection error: a master failover takes
# cluster-node-timeout plus an election (2-3 s with 1000 ms). Longer outages reach the
# caller as connection errors, which the worker retries on its own.
CLUSTER_RETRIES = 20
CLUSTER_BACKOFF_BASE_S = 0.05
CLUSTER_BACKOFF_CAP_S = 0.5
HEALTH_CHECK_INTERVAL_S = 30

_URL_RE = re.compile(r"^(?P<scheme>[a-z+]+)://(?:(?P<userinfo>[^@/]*)@)?(?P<rest>.*)$", re.S)
_SERVICE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """A parsed Redis URL: what kind of Redis, where, and as whom."""

    kind: str  # "single", "cluster" or "sentinel"
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: tuple[tuple[str, str], ...] = ()

    @property
    def masked(self) -> str:
        return mask_password(self.url)


def mask_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``; any scheme, several hosts."""
    match = _URL_RE.match(url)
    if match is None or match.group("userinfo") is None:
        return url
    user, sep, _ = match.group("userinfo").partition(":")
    if not sep:
        return url
    return f"{match.group('scheme')}://{user}:***@{match.group('rest')}"


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"bad Redis URL {mask_password(url)!r}: {why}")


def _hosts(url: str, text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise _bad(url, "an empty host in the host list")
        if item.startswith("["):  # [ipv6]:port
            host, _, tail = item[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise _bad(url, f"no host in {item!r}")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise _bad(url, f"port {port_text!r} is not a number") from None
        if not 0 < port < 65536:
            raise _bad(url, f"port {port} is out of range")
        hosts.append((unquote(host), port))
    return tuple(hosts)


def parse_url(url: object) -> RedisAddress:
    """Parses any URL rexec takes (see the module docstring); raises ConfigurationError
    with one line saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"a Redis URL is a non-empty string, got {url!r}")
    match = _URL_RE.match(url.strip())
    if match is None:
        raise _bad(url, "expected scheme://…, for example redis://localhost:6379/0")
    scheme = match.group("scheme")
    if scheme in SINGLE_SCHEMES:
        try:
            kwargs = redis_parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise _bad(url, str(exc)) from None
        host = kwargs.get("host") or kwargs.get("path") or "localhost"
        return RedisAddress(
            "single",
            url,
            ((str(host), int(kwargs.get("port") or DEFAULT_PORT)),),
            db=int(kwargs.get("db") or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            tls=scheme == "rediss",
        )
    if scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        known = ", ".join(SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES)
        raise _bad(url, f"unknown scheme {scheme!r} (known: {known})")
    userinfo = match.group("userinfo")
    username = password = None
    if userinfo is not None:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    rest, _, query = match.group("rest").partition("?")
    netloc, _, path = rest.partition("/")
    try:
        options = tuple(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise _bad(url, f"cannot parse the options {query!r}") from None
    tls = scheme.startswith("rediss")
    if scheme in CLUSTER_SCHEMES:
        if path.strip("/") not in ("", "0"):
            raise _bad(url, "a Redis Cluster has only database 0")
        hosts = _hosts(url, netloc, DEFAULT_PORT)
        return RedisAddress("cluster", url, hosts, None, 0, username, password, tls, options)
    hosts = _hosts(url, netloc, DEFAULT_SENTINEL_PORT)
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise _bad(url, "no service name: redis+sentinel://host:port[,host:port]/SERVICE[/DB]")
    if len(parts) > 2:
        raise _bad(url, "expected /SERVICE[/DB] after the Sentinel addresses")
    service = unquote(parts[0])
    if not _SERVICE_RE.fullmatch(service):
        raise _bad(url, f"not a Sentinel service name: {service!r}")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise _bad(url, f"database {parts[1]!r} is not a number")
        db = int(parts[1])
    return RedisAddress("sentinel", url, hosts, service, db, username, password, tls, options)


def _client_options(address: RedisAddress) -> tuple[dict[str, Any], str | None]:
    """redis-py's keyword arguments for the URL's query options (parsed by redis-py
    itself, through an equivalent plain URL), and the Sentinels' own password."""
    options = dict(address.options)
    sentinel_password = options.pop("sentinel_password", None)
    if not options:
        return {}, sentinel_password
    plain = f"{'rediss' if address.tls else 'redis'}://localhost/?{urlencode(options)}"
    try:
        kwargs = redis_parse_url(plain)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise _bad(address.url, str(exc)) from None
    for name in ("host", "port", "db", "username", "password", "connection_class"):
        kwargs.pop(name, None)
    return kwargs, sentinel_password


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that keeps bytes as bytes: ``redis.Redis`` for one server
    and for Sentinel (its pool asks the Sentinels for the master on each connection),
    ``RedisCluster`` for a cluster (typed as ``redis.Redis``: rexec only uses the
    commands both have, on keys of one hash tag). Raises ConfigurationError for a bad
    URL and RedisUnavailableError when no seed node of a cluster answers."""
    address = parse_url(url)
    if address.kind == "single":
        try:
            return redis.Redis.from_url(
                url, decode_responses=False, health_check_interval=HEALTH_CHECK_INTERVAL_S
            )
        except ValueError as exc:
            raise _bad(url, str(exc)) from exc
    kwargs, sentinel_password = _client_options(address)
    common = _common_options(address, kwargs)
    if address.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in address.hosts]  # type: ignore[no-untyped-call]
        try:
            cluster = RedisCluster(startup_nodes=nodes, retry=_failover_retry(), **common)
        except RedisClusterException as exc:
            raise RedisUnavailableError(
                f"no node of the Redis Cluster at {address.masked} answers: {one_line(exc)}"
            ) from exc
        except (TypeError, ValueError) as exc:
            raise _bad(url, str(exc)) from exc
        # A RedisCluster serves the same commands for the keys of one slot.
        return cast(redis.Redis, cluster)
    sentinel_kwargs = _sentinel_options(address, sentinel_password)
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name in kwargs:
            sentinel_kwargs[name] = kwargs[name]
    sentinel_kwargs.setdefault("socket_connect_timeout", 1.0)
    sentinel_kwargs.setdefault("socket_timeout", 1.0)
    try:
        sentinel = _Sentinels(list(address.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        assert address.service is not None
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            address.service,
            db=address.db,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            retry=_failover_retry(),
            **common,
        )
    except (TypeError, ValueError) as exc:
        raise _bad(url, str(exc)) from exc
    return master


def _common_options(address: RedisAddress, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The client options of a cluster's or a Sentinel service's nodes."""
    common: dict[str, Any] = {
        "username": address.username,
        "password": address.password,
        "decode_responses": False,
        **kwargs,
    }
    if address.tls:
        common["ssl"] = True
    return common


def _sentinel_options(address: RedisAddress, password: str | None) -> dict[str, Any]:
    """The options of the connections to the Sentinels themselves."""
    options: dict[str, Any] = {"password": password}
    if address.tls:
        options["ssl"] = True
    return options


def _failover_retry() -> Retry:
    return Retry(
        ExponentialBackoff(cap=CLUSTER_BACKOFF_CAP_S, base=CLUSTER_BACKOFF_BASE_S),
        CLUSTER_RETRIES,
    )


class _Sentinels(Sentinel):
    """redis-py's Sentinel client, saying in one line why no master was found."""

    def _where(self) -> str:
        return ",".join(f"{c.connection_pool.connection_kwargs.get('host')}:"
                        f"{c.connection_pool.connection_kwargs.get('port')}"
                        for c in self.sentinels)  # fmt: skip

    def discover_master(self, service_name: str) -> tuple[str, int]:
        try:
            found: tuple[str, int] = super().discover_master(service_name)  # type: ignore[no-untyped-call]
        except redis.ResponseError as exc:
            if "unknown command" not in str(exc).lower():
                raise
            # A plain Redis (or a cluster node) given as a Sentinel.
            raise ConfigurationError(
                f"{self._where()} is not a Sentinel (it does not know the SENTINEL"
                " command): give redis:// for a plain Redis, or the Sentinels' addresses"
            ) from None
        except MasterNotFoundError:
            where = self._where()
            answering, knowing = 0, 0
            for sentinel in self.sentinels:
                try:
                    masters = sentinel.sentinel_masters()
                except redis.RedisError:
                    continue
                answering += 1
                knowing += service_name in masters
            if answering and not knowing:
                # Not a failover: no Sentinel has heard of it (a typo, another group).
                raise ConfigurationError(
                    f"the Sentinels at {where} know no service {service_name!r}"
                ) from None
            if answering == 0:
                why = f"no Sentinel at {where} answers"
            else:
                why = (
                    f"the Sentinels at {where} name no usable master for service"
                    f" {service_name!r} now (a failover under way?)"
                )
            raise MasterNotFoundError(why) from None
        return found


def connect_async(url: str) -> redis.asyncio.Redis:
    """The asyncio twin of :func:`connect` (for ``async def`` handlers)."""
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.sentinel

    address = parse_url(url)
    if address.kind == "single":
        try:
            return redis.asyncio.Redis.from_url(url, decode_responses=False)
        except ValueError as exc:
            raise _bad(url, str(exc)) from exc
    kwargs, sentinel_password = _client_options(address)
    common = _common_options(address, kwargs)
    if address.kind == "cluster":
        nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in address.hosts]
        cluster = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **common)
        return cast(redis.asyncio.Redis, cluster)
    sentinel_kwargs = _sentinel_options(address, sentinel_password)
    sentinel = redis.asyncio.sentinel.Sentinel(list(address.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    assert address.service is not None
    master: redis.asyncio.Redis = sentinel.master_for(address.service, db=address.db, **common)
    return master


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster (a RedisCluster or its pipeline)."""
    from redis.cluster import ClusterPipeline

    return isinstance(client, RedisCluster | ClusterPipeline)


def node_client(client: redis.Redis, key: str) -> redis.Redis:
    """The plain client of the server that holds ``key``: the client itself, or on a
    cluster the master of ``key``'s slot as the cluster client knows it now."""
    if not isinstance(client, RedisCluster):
        return client
    node = client.get_node_from_key(key)
    if node is None or node.redis_connection is None:
        client.nodes_manager.initialize()
        node = client.get_node_from_key(key)
    if node is None or node.redis_connection is None:
        raise RedisUnavailableError(f"no Redis Cluster node serves the slot of {key!r}")
    connection: redis.Redis = node.redis_connection
    return connection


def one_line(exc: BaseException) -> str:
    """An exception's text on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
