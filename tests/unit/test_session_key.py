"""Which runs may share a warm Spark session: the key covers what fixes a session (catalog
Spark settings, Spark sizing and jar, actor CPUs and threads) and nothing a lease brings."""

from __future__ import annotations

import dataclasses

import pytest

from actors.warm import session_key
from backfill.config import Config, RunConfig, SparkConfig, TableConfig

CATALOG = {"spark.sql.catalog.demo": "org.apache.iceberg.spark.SparkCatalog", "spark.sql.catalog.demo.uri": "x"}


def _cfg(**parts) -> Config:
    return dataclasses.replace(Config(), **parts)


def test_tables_and_run_options_do_not_change_the_key():
    a = _cfg()
    b = _cfg(tables=TableConfig(target_table="other.history", staging_table="other.staging", window=24),
             run=RunConfig(max_parallel=7, partitions_per_merge=3, order="oldest", keep_warm_seconds=60))
    assert session_key(a, CATALOG) == session_key(b, CATALOG)


@pytest.mark.parametrize("change", [
    {"spark": SparkConfig(executor_memory="8g")},
    {"spark": SparkConfig(engine="local")},  # a local session is never lent to a RayDP run, nor back
    {"spark": SparkConfig(conf={"spark.sql.shuffle.partitions": "7"})},
    {"run": RunConfig(partitions_per_actor=3)},
    {"run": RunConfig(actor_cpus=2.0)},
])
def test_what_fixes_a_session_changes_the_key(change):
    assert session_key(_cfg(), CATALOG) != session_key(_cfg(**change), CATALOG)


def test_catalog_settings_change_the_key_and_a_secret_never_shows_in_it():
    secret = {**CATALOG, "spark.sql.catalog.demo.credential": "id:s3cr3t-value"}
    key = session_key(_cfg(), secret)
    assert key != session_key(_cfg(), CATALOG)
    assert "s3cr3t" not in key and len(key) == 12
    assert key == session_key(_cfg(), dict(reversed(list(secret.items()))))  # order does not matter
