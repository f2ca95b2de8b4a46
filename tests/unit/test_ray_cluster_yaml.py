"""The shipped ray_cluster.yaml passes Ray's own cluster-launcher validation, offline.

No JVM, no cloud, no running Ray: ``cluster.cluster_config.validate_cluster_yaml`` wraps
Ray's ``prepare_config`` + ``validate_config`` (schema ``ray/autoscaler/ray-schema.json``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray.autoscaler._private.util")

from backfill.errors import ConfigError  # noqa: E402
from cluster.cluster_config import validate_cluster_yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "ray_cluster.yaml"


def _shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "broken_cluster.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def test_shipped_yaml_passes_rays_schema():
    cfg = validate_cluster_yaml(SHIPPED)
    assert cfg["provider"]["type"] == "aws"
    head = cfg["head_node_type"]
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != head}
    assert workers, "at least one worker node type"
    # prepare_config filled the head's worker limit and merged setup commands
    assert cfg["available_node_types"][head]["max_workers"] == 0
    assert any("openjdk-17-jre-headless" in c for c in cfg["worker_setup_commands"])
    assert cfg["idle_timeout_minutes"] > 0
    for node_type in workers.values():
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= cfg["max_workers"]
        # room for at least one partition actor (1 CPU) plus one executor and the spare CPU
        assert node_type["resources"]["CPU"] >= 3


def test_shipped_yaml_installs_the_project_and_its_pins():
    cfg = _shipped()
    setup = " ".join(cfg["setup_commands"])
    assert "pip install ~/iceberg-backfill" in setup
    assert "~/iceberg-backfill" in cfg["file_mounts"]
    # the Iceberg jar comes from the pinned wheel in pyproject, not from Maven
    assert "snowpark-connect-deps-iceberg==1.0.2" in (REPO / "pyproject.toml").read_text()
    assert "iceberg_runtime_jar" in setup


@pytest.mark.parametrize(
    "break_it, expected",
    [
        # misspelled key inside a node type
        (lambda c: c["available_node_types"]["ray.worker.partitions"].update(
            min_worker=c["available_node_types"]["ray.worker.partitions"].pop("min_workers")),
         "min_worker"),
        # misspelled top-level key
        (lambda c: c.update(idle_timeout_minute=c.pop("idle_timeout_minutes")),
         "idle_timeout_minute"),
        # wrong type
        (lambda c: c.update(max_workers="four"), "'four' is not of type 'integer'"),
        # fractional resources are not allowed by the schema
        (lambda c: c["available_node_types"]["ray.worker.partitions"]["resources"].update(CPU=1.5),
         "1.5 is not of type 'integer'"),
    ],
    ids=["node-type-typo", "top-level-typo", "wrong-type", "fractional-cpu"],
)
def test_broken_copy_fails_with_schema_message(tmp_path, break_it, expected):
    data = _shipped()
    break_it(data)
    with pytest.raises(ConfigError, match="fails Ray's cluster schema") as info:
        validate_cluster_yaml(_write(tmp_path, data))
    assert expected in str(info.value)
    assert "broken_cluster.yaml" in str(info.value)


def test_semantic_checks_after_the_schema(tmp_path):
    data = _shipped()
    data["head_node_type"] = "ray.head.missing"
    with pytest.raises(ConfigError, match="head_node_type"):
        validate_cluster_yaml(_write(tmp_path, data))

    data = _shipped()
    data["available_node_types"]["ray.worker.partitions"]["min_workers"] = 9
    with pytest.raises(ConfigError, match="max_workers"):
        validate_cluster_yaml(_write(tmp_path, data))


def test_unreadable_inputs(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        validate_cluster_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        validate_cluster_yaml(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        validate_cluster_yaml(bad)
    bad.write_text("cluster_name: x\nprovider: {type: no-such-cloud}\n")
    with pytest.raises(ConfigError, match="no-such-cloud"):
        validate_cluster_yaml(bad)
