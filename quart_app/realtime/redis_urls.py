"""The Redis URL forms beyond one node: a Redis Cluster, or a master found through Sentinel.

* ``redis+cluster://[user:password@]host:port[,host:port…]`` (``rediss+cluster://`` for TLS):
  any reachable nodes of the cluster; the rest is discovered (``CLUSTER SLOTS``). No database
  number (a cluster has only database 0).
* ``redis+sentinel://[user:password@]host:port[,host:port…]/<master-name>[/<db>]``
  (``rediss+sentinel://``: TLS to the data nodes): the sentinels, and the name they monitor the
  master under. The password (if any) is the data nodes'; the sentinels are asked without one.

A port may be left out (6379 for a cluster node, 26379 for a sentinel). :func:`parse` raises
``ValueError`` with a message that names what is wrong; :func:`broker_class` picks the broker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

CLUSTER_SCHEMES = {"redis+cluster", "rediss+cluster"}
SENTINEL_SCHEMES = {"redis+sentinel", "rediss+sentinel"}


@dataclass(frozen=True)
class Topology:
    kind: str                              # "cluster" or "sentinel"
    nodes: tuple[tuple[str, int], ...]     # cluster seed nodes, or the sentinels
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    master: str = ""                       # sentinel: the monitored master's name
    db: int = 0


def kind_of(url: str) -> str:
    """``"cluster"``, ``"sentinel"`` or ``"single"`` (plain redis://, rediss://, unix://)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in CLUSTER_SCHEMES:
        return "cluster"
    if scheme in SENTINEL_SCHEMES:
        return "sentinel"
    return "single"


def _hosts(netloc: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in netloc.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"an empty host in {url!r}")
        if item.startswith("["):                       # [::1]:7000
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
        if not host:
            raise ValueError(f"a host without a name in {url!r}")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"a bad port {port_text!r} in {url!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"a bad port {port} in {url!r}")
        hosts.append((host, port))
    return tuple(hosts)


def parse(url: str) -> Topology:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    kind = kind_of(url)
    if kind == "single":
        raise ValueError(f"not a cluster or sentinel URL: {url!r}")
    userinfo, _, netloc = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    if not netloc:
        raise ValueError(f"no host in {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"no query or fragment is read from {url!r}")
    ssl = scheme.startswith("rediss")
    if kind == "cluster":
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"a Redis Cluster has only database 0: {url!r}")
        _require_sharded_pubsub()
        return Topology("cluster", _hosts(netloc, 6379, url), ssl, username, password)
    segments = [s for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ValueError(f"a sentinel URL names the master: redis+sentinel://host:port/"
                         f"<master-name>[/<db>], got {url!r}")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"a bad database number {segments[1]!r} in {url!r}")
        db = int(segments[1])
    return Topology("sentinel", _hosts(netloc, 26379, url), ssl, username, password,
                    unquote(segments[0]), db)


# The cluster broker SSUBSCRIBEs on plain asyncio connections: redis-py's asyncio PubSub
# handles shard channels completely from 8.0 on (smessage and sunsubscribe were missing before).
MIN_REDIS_PY_FOR_CLUSTER = (8, 0)


def _require_sharded_pubsub() -> None:
    import redis

    version = tuple(int(p) for p in redis.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_REDIS_PY_FOR_CLUSTER:
        raise ValueError(f"a Redis Cluster needs redis-py 8.0 or newer for sharded pub/sub "
                         f"(installed: {redis.__version__})")


def broker_class(url: str) -> type:
    """The broker class for ``url``: RedisBroker, SentinelBroker or ClusterBroker."""
    kind = kind_of(url)
    if kind == "cluster":
        from .broker_cluster import ClusterBroker

        return ClusterBroker
    if kind == "sentinel":
        from .broker_sentinel import SentinelBroker

        return SentinelBroker
    from .broker_redis import RedisBroker

    return RedisBroker


def redis_broker(url: str, *args: Any, **kwargs: Any):
    """The broker for ``url`` (``REDIS_URL``): :func:`broker_class`'s, made with the rest of the
    arguments (those of :class:`~quart_app.realtime.broker_redis.RedisBroker`)."""
    return broker_class(url)(url, *args, **kwargs)
