"""Fast unit tests: CatalogConfig -> Spark conf and pyiceberg properties (no JVM)."""

from __future__ import annotations

import dataclasses
import json
import socket

import pytest

from backfill.config import CatalogConfig
from backfill.errors import EnvironmentProblem
from cluster import catalog as catalog_mod
from cluster.catalog import (
    GLUE_CATALOG_IMPL,
    SPARK_CATALOG_CLASS,
    ResolvedCatalog,
    load_pyiceberg_catalog,
    resolve_catalog,
)


@pytest.mark.parametrize("kind", ["hive", "rest", "hadoop", "jdbc", "nessie"])
def test_spark_conf_sets_type_for_iceberg_native_types(kind):
    conf = ResolvedCatalog("prod", kind, {"uri": "u", "warehouse": "s3://b/w"}).spark_conf()
    assert conf == {
        "spark.sql.catalog.prod": SPARK_CATALOG_CLASS,
        "spark.sql.catalog.prod.type": kind,
        "spark.sql.catalog.prod.uri": "u",
        "spark.sql.catalog.prod.warehouse": "s3://b/w",
    }


def test_spark_conf_uses_catalog_impl_for_glue():
    conf = ResolvedCatalog("g", "glue", {"warehouse": "s3://b"}).spark_conf()
    assert conf["spark.sql.catalog.g.catalog-impl"] == GLUE_CATALOG_IMPL
    assert "spark.sql.catalog.g.type" not in conf


def test_spark_conf_passes_other_types_through_without_type_key():
    props = {"catalog-impl": "com.example.MyCatalog", "io-impl": "x.IO"}
    conf = ResolvedCatalog("c", "custom", props).spark_conf()
    assert conf == {
        "spark.sql.catalog.c": SPARK_CATALOG_CLASS,
        "spark.sql.catalog.c.catalog-impl": "com.example.MyCatalog",
        "spark.sql.catalog.c.io-impl": "x.IO",
    }


def test_explicit_catalog_impl_is_not_combined_with_type():
    # Iceberg rejects a catalog with both `type` and `catalog-impl` set.
    conf = ResolvedCatalog("c", "hive", {"catalog-impl": "com.example.Hive"}).spark_conf()
    assert "spark.sql.catalog.c.type" not in conf


def test_spark_extra_is_spark_only_and_wins():
    resolved = ResolvedCatalog(
        "c", "rest", {"uri": "http://a", "x": "1"},
        spark_extra={"x": "2", "header.X-Iceberg-Access-Delegation": "vended-credentials"},
        pyiceberg_extra={"py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO"},
    )
    conf = resolved.spark_conf()
    assert conf["spark.sql.catalog.c.x"] == "2"
    assert conf["spark.sql.catalog.c.header.X-Iceberg-Access-Delegation"] == "vended-credentials"
    assert not any("py-io-impl" in key for key in conf)


def test_pyiceberg_properties_merge_type_properties_and_extras():
    resolved = ResolvedCatalog(
        "c", "jdbc", {"uri": "jdbc:postgresql://h/db", "warehouse": "s3://w"},
        spark_extra={"jdbc.user": "spark"},
        pyiceberg_extra={"type": "sql", "uri": "postgresql+psycopg2://h/db"},
    )
    assert resolved.pyiceberg_properties() == {
        "type": "sql", "uri": "postgresql+psycopg2://h/db", "warehouse": "s3://w",
    }


def test_redacted_hides_secret_values():
    resolved = ResolvedCatalog(
        "c", "rest", {"uri": "http://a", "credential": "id:secret", "token": "t"},
        spark_extra={"s3.secret-access-key": "k"}, pyiceberg_extra={"s3.region": "eu"},
    )
    shown = resolved.redacted()
    assert shown["properties"] == {"uri": "http://a", "credential": "***", "token": "***"}
    assert shown["spark_properties"] == {"s3.secret-access-key": "***"}
    assert shown["pyiceberg_properties"] == {"s3.region": "eu"}
    assert "secret" not in json.dumps(shown).replace("secret-access-key", "")


def test_resolved_catalog_is_frozen():
    resolved = ResolvedCatalog("c", "hive", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.name = "d"  # type: ignore[misc]


def test_resolve_passes_other_types_through_and_adds_warehouse():
    cfg = CatalogConfig(name="prod", type="rest", warehouse="s3://bucket/wh",
                        properties={"uri": "https://cat"}, spark_properties={"a": "1"},
                        pyiceberg_properties={"b": "2"})
    resolved = resolve_catalog(cfg)
    assert resolved == ResolvedCatalog("prod", "rest", {"uri": "https://cat",
                                                        "warehouse": "s3://bucket/wh"},
                                       {"a": "1"}, {"b": "2"})


def test_resolve_keeps_an_explicit_warehouse_property_and_skips_an_empty_one():
    cfg = CatalogConfig(type="hive", warehouse="./ignored", properties={"warehouse": "s3://w"})
    assert resolve_catalog(cfg).properties["warehouse"] == "s3://w"
    cfg = CatalogConfig(type="hive", warehouse="", properties={"uri": "thrift://h:9083"})
    assert "warehouse" not in resolve_catalog(cfg).properties


def test_resolve_embedded_becomes_hive_on_the_warehouse_service(tmp_path, monkeypatch):
    started = []

    def fake_start(self):
        started.append(self.warehouse_dir)
        return "thrift://127.0.0.1:12345"

    monkeypatch.setattr("cluster.metastore.EmbeddedMetastore.start", fake_start)
    cfg = CatalogConfig(name="demo", type="embedded", warehouse=str(tmp_path / "wh"),
                        properties={"clients": "4"}, pyiceberg_properties={"x": "y"})
    resolved = resolve_catalog(cfg)
    assert started == [(tmp_path / "wh").resolve()]
    assert resolved.type == "hive"
    assert resolved.properties == {
        "uri": "thrift://127.0.0.1:12345",
        "warehouse": (tmp_path / "wh").resolve().as_uri(),
        "clients": "4",
    }
    assert resolved.pyiceberg_properties()["hive.hive2-compatible"] == "true"
    assert resolved.pyiceberg_properties()["x"] == "y"
    assert resolved.spark_conf()["spark.sql.catalog.demo.type"] == "hive"


def test_resolve_embedded_without_starting_uses_the_state_file(tmp_path):
    cfg = CatalogConfig(type="embedded", warehouse=str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="catalog start"):
        resolve_catalog(cfg, start_service=False)
    state_dir = tmp_path / ".metastore"
    state_dir.mkdir()
    (state_dir / "state.json").write_text(
        json.dumps({"pid": 1, "host": "127.0.0.1", "port": 4242}))
    assert resolve_catalog(cfg, start_service=False).uri == "thrift://127.0.0.1:4242"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_load_pyiceberg_catalog_explains_an_unreachable_service():
    port = _closed_port()
    resolved = ResolvedCatalog("demo", "hive", {"uri": f"thrift://127.0.0.1:{port}",
                                                "client.password": "hunter2"})
    with pytest.raises(EnvironmentProblem) as info:
        load_pyiceberg_catalog(resolved)
    message = str(info.value)
    assert "'demo'" in message and f"127.0.0.1:{port}" in message
    assert "iceberg-backfill catalog start" in message
    assert "hunter2" not in message


def test_unreachable_message_hides_a_password_inside_the_uri():
    resolved = ResolvedCatalog("c", "rest", {"uri": "https://alice:s3cret@cat.example:8181/api"})
    problem = catalog_mod._unreachable(resolved, ConnectionError("refused"))
    assert "s3cret" not in str(problem)
    assert "https://alice:***@cat.example:8181/api" in str(problem)
