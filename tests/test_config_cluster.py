"""The [cluster] section (docs/cluster.md): its default is one node without Redis, and every bad value
is a config error naming its key (never a node that half-joins a site)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from jasmin_sfu.config import ClusterConfig, ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
GOOD = {
    "JASMIN_CLUSTER_REDIS_URL": "redis://10.0.0.2:6379/0",
    "JASMIN_CLUSTER_NODE_ID": "n1",
    "JASMIN_CLUSTER_SECRET": "k" * 32,
}


def test_the_default_is_one_node_without_redis() -> None:
    """Protects the embedded default: no [cluster] means no Redis URL (Daemon opens no registry)."""
    cfg = load_config(env={})
    assert cfg.cluster == ClusterConfig() and cfg.cluster.redis_url == ""


def test_a_complete_section_loads_and_the_secret_is_not_printed() -> None:
    """Protects the happy path and `check-config`: the secret is left out of the printed tree."""
    cfg = load_config(
        env={
            **GOOD,
            "JASMIN_CLUSTER_ADVERTISED_URL": "wss://n1.example/ws",
            "JASMIN_CLUSTER_HEARTBEAT_INTERVAL_S": "1",
            "JASMIN_CLUSTER_TTL_S": "5",
        }
    )
    assert cfg.cluster.node_id == "n1" and cfg.cluster.ttl_s == 5.0
    assert "k" * 32 not in repr(cfg)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"JASMIN_CLUSTER_REDIS_URL": "http://10.0.0.2"}, "cluster.redis_url"),
        ({"JASMIN_CLUSTER_NODE_ID": ""}, "cluster.node_id"),
        ({"JASMIN_CLUSTER_NODE_ID": "n 1"}, "cluster.node_id"),
        ({"JASMIN_CLUSTER_SECRET": "short"}, "cluster.secret"),
        ({"JASMIN_CLUSTER_ADVERTISED_URL": "http://n1.example/ws"}, "cluster.advertised_url"),
        ({"JASMIN_CLUSTER_ADVERTISED_URL": "wss://n1.example"}, "cluster.advertised_url"),
        ({"JASMIN_SERVER_HOST": "0.0.0.0"}, "cluster.advertised_url"),
        ({"JASMIN_CLUSTER_HEARTBEAT_INTERVAL_S": "0"}, "cluster.heartbeat_interval_s"),
        ({"JASMIN_CLUSTER_TTL_S": "3", "JASMIN_CLUSTER_HEARTBEAT_INTERVAL_S": "2"}, "cluster.ttl_s"),
        ({"JASMIN_CLUSTER_KEY_PREFIX": "a*b"}, "cluster.key_prefix"),
        ({"JASMIN_SERVER_WORKERS": "2"}, "server.workers"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(change: dict[str, str], key: str) -> None:
    """Protects validation: each bad [cluster] value fails at load with its key in the message."""
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(env={**GOOD, **change})


def test_cluster_keys_without_a_redis_url_are_an_error() -> None:
    """Protects against a half-configured node silently running alone."""
    with pytest.raises(ConfigError, match="cluster.redis_url"):
        load_config(env={"JASMIN_CLUSTER_NODE_ID": "n1"})


def test_docs_show_every_cluster_key() -> None:
    """Protects docs/cluster.md and docs/deploy.md: their [cluster] blocks parse as TOML and name
    every key of ClusterConfig with its default values where given."""
    fields = set(ClusterConfig.__dataclass_fields__)
    for doc in ("cluster.md", "deploy.md"):
        text = (REPO / "docs" / doc).read_text()
        block = re.search(r"```toml\n(\[cluster\]\n.*?)```", text, re.S)
        assert block is not None, doc
        table = tomllib.loads(block.group(1))["cluster"]
        assert set(table) == fields, (doc, fields ^ set(table))
        d = ClusterConfig()
        assert table["heartbeat_interval_s"] == d.heartbeat_interval_s and table["ttl_s"] == d.ttl_s
        assert table["key_prefix"] == d.key_prefix
