"""REDIS_URL forms for a Redis Cluster and for Sentinel (quart_app/realtime/redis_urls.py)."""
import pytest

from quart_app.config import load_settings
from quart_app.errors import ConfigError
from quart_app.realtime import redis_urls


def test_cluster_url():
    topology = redis_urls.parse("rediss+cluster://u:p%40ss@r1:7000,r2,[::1]:7002")
    assert topology.kind == "cluster" and topology.ssl
    assert topology.nodes == (("r1", 7000), ("r2", 6379), ("::1", 7002))
    assert (topology.username, topology.password) == ("u", "p@ss")


def test_sentinel_url():
    topology = redis_urls.parse("redis+sentinel://:secret@s1:26380,s2/mymaster/3")
    assert topology.kind == "sentinel" and not topology.ssl
    assert topology.nodes == (("s1", 26380), ("s2", 26379))
    assert (topology.master, topology.db, topology.password) == ("mymaster", 3, "secret")
    assert redis_urls.parse("redis+sentinel://s1/mymaster").db == 0


@pytest.mark.parametrize("url, says", [
    ("redis+cluster://r1:7000/2", "only database 0"),
    ("redis+cluster://r1:notaport", "bad port"),
    ("redis+cluster://r1:7000,,r2:7001", "empty host"),
    ("redis+cluster://", "no host"),
    ("redis+cluster://r1:70000", "bad port"),
    ("redis+sentinel://s1:26379", "names the master"),
    ("redis+sentinel://s1:26379/m/x", "bad database"),
    ("redis+sentinel://s1:26379/m/0/extra", "names the master"),
    ("redis+sentinel://s1:26379/m?socket_timeout=1", "no query"),
])
def test_bad_urls_fail_at_start_naming_the_variable(url, says):
    with pytest.raises(ConfigError, match=says) as failure:
        load_settings({"REDIS_URL": url})
    assert str(failure.value).startswith("REDIS_URL")


def test_the_url_forms_pass_config_as_given():
    for url in ("redis+cluster://r1:7000,r2:7001", "redis+sentinel://s1,s2/m/1",
                "redis://r:6379/0"):
        assert load_settings({"REDIS_URL": url}).redis_url == url


def test_a_cluster_prefix_cannot_hold_the_hash_tag_braces():
    with pytest.raises(ConfigError, match="PULSE_REDIS_PREFIX"):
        load_settings({"REDIS_URL": "redis+cluster://r1:7000", "PULSE_REDIS_PREFIX": "a{b}:"})
    assert load_settings({"REDIS_URL": "redis://r1:7000", "PULSE_REDIS_PREFIX": "a{b}:"})


def test_the_broker_class_follows_the_scheme():
    from quart_app.realtime.broker_cluster import ClusterBroker
    from quart_app.realtime.broker_redis import RedisBroker
    from quart_app.realtime.broker_sentinel import SentinelBroker
    from quart_app.realtime.redis_urls import redis_broker

    assert type(redis_broker("redis+cluster://r1:7000")) is ClusterBroker
    assert type(redis_broker("redis+sentinel://s1/m")) is SentinelBroker
    assert type(redis_broker("redis://r1:6379/0")) is RedisBroker
    assert type(redis_broker("rediss+cluster://r1:7000", prefix="x:")) is ClusterBroker
