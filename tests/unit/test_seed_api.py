"""The seed's Python names and command lines, without a JVM: signatures, refusals, wiring.

The real-stack run of every seed command and snippet is tests/integration/test_seed_readme.py;
this checks in seconds what can be checked without Spark: the seed's command lines parse,
its keyword forms reach the right configuration, and every ambiguous call is refused
with a message saying what to pass instead.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import backfill
import backfill.cli as cli
import backfill.cli.options as options
import backfill.cli.run as cli_run
from backfill import api
from backfill.config import CatalogConfig, Config, HistoryColumn, load_config
from backfill.core.entries import Entry
from backfill.errors import ConfigError, EnvironmentProblem, InputError, VerificationFailed
from backfill.iceberg import tables
from backfill.ops import prepare as prepare_mod
from backfill.ops.verify import VerifyReport
from cluster.catalog import ResolvedCatalog
from tests.integration.test_seed_readme import (
    SEED_COPY,
    SEED_MODULES,
    SEED_ORIGINAL,
    blocks,
    python_block,
    rewrite_imports,
    seed_commands,
    seed_insert,
    seed_text,
)

ROOT = Path(__file__).resolve().parents[2]
CLASS = "org.apache.iceberg.spark.SparkCatalog"


# ------------------------------------------------------------------ the seed file


def test_seed_copy_is_verbatim():
    if not SEED_ORIGINAL.exists():
        pytest.skip(f"{SEED_ORIGINAL} is not beside this clone")
    assert SEED_COPY.read_text() == SEED_ORIGINAL.read_text()


def test_every_seed_command_line_parses_with_the_demo_config():
    lines = seed_commands(seed_text())
    assert lines[0] == "pip install pyspark" and lines[-2:] == ["--method merge", "--method sql"]
    parser = cli.build_parser()
    for line in lines[1:-2]:
        words = line.split()
        assert words[:2] == ["python", "run_backfill.py"]
        args = parser.parse_args([*words[2:], "--config", "seed.toml"])
        assert callable(args.func)
    args = parser.parse_args(lines[3].split()[2:])
    assert args.report and args.verify and args.method == "merge" and args.max_parallel == 4


def test_seed_imports_map_to_existing_names():
    text = seed_text()
    for block in blocks(text, "python"):
        for line in rewrite_imports(block).splitlines():
            if line.startswith("from backfill.seed."):
                module, names = line[len("from "):].split(" import ")
                mod = importlib.import_module(module)
                for name in names.split(","):
                    assert hasattr(mod, name.strip()), f"{module} lacks {name}"
    assert set(SEED_MODULES) == {"config", "run_backfill", "backfill_processor", "backfill_batch", "backfill_sql",
                                 "utils"}


def test_seed_config_names_and_history_column_order():
    from backfill.seed import config as seed_config

    assert seed_config.HISTORY_COLUMNS[0] == HistoryColumn("balance_history", "balance")
    assert len(seed_config.HISTORY_COLUMNS) == 20
    assert seed_config.MAX_HISTORY_MONTHS == 36 and seed_config.RETRY_COUNT == 3
    assert isinstance(seed_config.SPARK_CONFIGS, dict)


def test_seed_insert_fills_the_placeholder_with_the_other_18_values():
    sql = seed_insert(python_block(seed_text(), "INSERT INTO backfill_staging"), "bf-001", 100000, "2023-11")
    assert "'bf-001'" in sql and "100000," in sql and "'2023-11'" in sql and "..." not in sql
    values = sql.split("VALUES", 1)[1]
    assert values.count(".00") == 20 and not sql.endswith(";")


def test_top_level_run_backfill_is_the_cli():
    out = subprocess.run([sys.executable, "run_backfill.py", "backfill", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "--report" in out and "--verify" in out and "main is left untouched" in " ".join(out.split())
    mod = importlib.import_module("run_backfill")
    assert mod.create_spark_session is api.create_spark_session and mod.main is cli.main


def test_package_exports_the_new_names():
    assert backfill.create_spark_session is api.create_spark_session
    assert backfill.VerifyResult is api.VerifyResult
    assert {"create_spark_session", "VerifyResult"} <= set(backfill.__all__)


# ------------------------------------------------------------------ catalog from a Spark session


def _hive(name: str = "catalog", **extra: str) -> dict[str, str]:
    p = f"spark.sql.catalog.{name}"
    return {p: CLASS, f"{p}.type": "hive", f"{p}.uri": "thrift://h:9083", f"{p}.warehouse": "s3://b/wh",
            **{f"{p}.{k}": v for k, v in extra.items()}}


def test_hive_catalog_is_read_back_with_its_properties_minus_session_only_keys():
    cat = api.catalog_from_spark_conf(_hive(**{"default-namespace": "db", "cache-enabled": "false", "x": "1"}))
    assert cat == CatalogConfig(name="catalog", type="hive", warehouse="s3://b/wh",
                                properties={"uri": "thrift://h:9083", "x": "1", "warehouse": "s3://b/wh"})


def test_embedded_metastore_warehouse_becomes_embedded_again(tmp_path):
    (tmp_path / ".metastore").mkdir()  # made by the embedded catalog; not running here
    settings = {**_hive(), "spark.sql.catalog.catalog.warehouse": tmp_path.as_uri()}
    cat = api.catalog_from_spark_conf(settings)
    assert (cat.type, Path(cat.warehouse), dict(cat.properties)) == ("embedded", tmp_path, {})


def test_catalog_is_chosen_by_name_then_default_then_only_one():
    both = {**_hive("a"), **_hive("b")}
    assert api.catalog_from_spark_conf(both, "b").name == "b"
    assert api.catalog_from_spark_conf({**both, "spark.sql.defaultCatalog": "a"}).name == "a"
    with pytest.raises(ConfigError, match="2 Iceberg catalogs .*config="):
        api.catalog_from_spark_conf(both)
    with pytest.raises(ConfigError, match="no Iceberg catalog 'c'.*its Iceberg catalogs: a, b"):
        api.catalog_from_spark_conf(both, "c")


def test_the_seed_builders_spark_catalog_is_refused_naming_config():
    settings = {"spark.sql.catalog.spark_catalog": CLASS,
                "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"}
    with pytest.raises(ConfigError, match="no type and no catalog-impl.*pass config="):
        api.catalog_from_spark_conf(settings)


def test_glue_catalog_impl_maps_to_glue():
    p = "spark.sql.catalog.g"
    cat = api.catalog_from_spark_conf({p: CLASS, f"{p}.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog"})
    assert cat.type == "glue"


@dataclass
class FakeSession:
    """What the API reads from a SparkSession: ``sparkContext.getConf().getAll()``."""

    settings: dict[str, str]

    @property
    def sparkContext(self) -> Any:  # noqa: N802 - pyspark's name
        return SimpleNamespace(getConf=lambda: SimpleNamespace(getAll=lambda: list(self.settings.items())))


def test_processor_config_from_a_session_with_the_seeds_keywords(monkeypatch):
    monkeypatch.delenv(api.CONFIG_ENV, raising=False)
    cols = [HistoryColumn("balance_history", "balance")]
    cfg = api.processor_config(None, FakeSession(_hive()), "catalog.db.accounts_history", cols)
    assert cfg.catalog.name == "catalog" and cfg.catalog.type == "hive"
    assert cfg.tables.target_table == "catalog.db.accounts_history" and cfg.tables.history_columns == tuple(cols)


def test_processor_refuses_a_config_and_a_session_together():
    with pytest.raises(ConfigError, match="config= or spark=, not both"):
        api.processor_config(Config(), FakeSession(_hive()))


def test_a_target_naming_another_catalog_than_the_session_is_refused(monkeypatch):
    monkeypatch.delenv(api.CONFIG_ENV, raising=False)
    with pytest.raises(ConfigError, match="no Iceberg catalog 'demo'"):
        api.processor_config(None, FakeSession(_hive()), "demo.db.accounts_history")


def test_not_a_session_is_refused():
    with pytest.raises(ConfigError, match="must be a pyspark SparkSession"):
        api.spark_settings(object())  # type: ignore[arg-type]


def test_default_config_reads_the_environment_variable(tmp_path, monkeypatch):
    f = tmp_path / "b.toml"
    f.write_text('[catalog]\nname = "catalog"\n')
    monkeypatch.setenv(api.CONFIG_ENV, str(f))
    assert api.default_config().catalog.name == "catalog"
    monkeypatch.setenv(api.CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        api.default_config()


def test_session_settings_make_the_catalog_and_namespace_the_defaults(tmp_path):
    cfg = load_config(None, catalog__name="catalog")
    resolved = ResolvedCatalog("catalog", "hive", {"uri": "thrift://h:1"})
    jar = tmp_path / "iceberg.jar"
    s = api.session_settings(cfg, resolved, jar, {"spark.sql.shuffle.partitions": "3"})
    assert s["spark.sql.defaultCatalog"] == "catalog"
    assert s["spark.sql.catalog.catalog.default-namespace"] == "db"
    assert s["spark.sql.catalog.catalog"] == CLASS and s["spark.sql.shuffle.partitions"] == "3"
    assert api.catalog_from_spark_conf(s).properties == {"uri": "thrift://h:1"}  # read back without session keys


def test_a_running_session_without_the_catalog_is_refused():
    wanted = {"spark.jars": "/j.jar", "spark.sql.catalog.catalog": CLASS}
    api._refuse_foreign_session(FakeSession(dict(wanted)), wanted, "catalog")  # the tool's own: fine
    with pytest.raises(EnvironmentProblem, match="spark.stop"):
        api._refuse_foreign_session(FakeSession({"spark.app.name": "x"}), wanted, "catalog")


# ------------------------------------------------------------------ several backfills, per-id months


def test_months_by_id_refuses_unknown_keys_and_two_months_for_one_id():
    assert api.months_by_id([{"backfill_id": "a", "backfill_month": "2023-12"}, {"backfill_id": "b"}]) == \
        {"a": "2023-12", "b": None}
    with pytest.raises(InputError, match="unknown key"):
        api.months_by_id([{"backfill_id": "a", "month": "2023-12"}])
    with pytest.raises(InputError, match="must have 'backfill_id'"):
        api.months_by_id([{"backfill_month": "2023-12"}])
    with pytest.raises(InputError, match="two months"):
        api.months_by_id([{"backfill_id": "a", "backfill_month": "2023-12"},
                          {"backfill_id": "a", "backfill_month": "2023-11"}])
    with pytest.raises(InputError, match="at least one"):
        api.months_by_id([])


class RecordingProcessor:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def run(self, ids: Any, month: Any) -> str:
        self.calls.append((ids, month))
        return "result"


def test_run_parallel_backfills_passes_one_month_or_a_per_id_mapping():
    proc = RecordingProcessor()
    api.run_parallel_backfills(proc, [{"backfill_id": "a", "backfill_month": "2023-12"},  # type: ignore[arg-type]
                                      {"backfill_id": "b", "backfill_month": "2023-12"}])
    api.run_parallel_backfills(proc, [{"backfill_id": "a", "backfill_month": "2023-12"},  # type: ignore[arg-type]
                                      {"backfill_id": "b", "backfill_month": "2023-11"}])
    assert proc.calls == [(["a", "b"], "2023-12"), (["a", "b"], {"a": "2023-12", "b": "2023-11"})]


def test_check_request_validates_per_id_months():
    assert prepare_mod.check_request(["b", "a"], {"a": "2023-12", "b": None}) == ("a", "b")
    with pytest.raises(InputError, match="not in the request"):
        prepare_mod.check_request(["a"], {"x": "2023-12"})
    with pytest.raises(InputError, match="'2023-13'"):
        prepare_mod.check_request(["a"], {"a": "2023-13"})


def test_per_id_filter_is_one_scan_with_an_or_per_id():
    flt = str(tables._ids_filter(["a", "b"], {"a": "2023-12", "b": None}))
    assert "Or(" in flt and "2023-12" in flt and flt.count("backfill_id") == 2
    assert "backfill_month" not in str(tables._ids_filter(["a"], None))


def _entry(bid: str, acct: int, month: str) -> Entry:
    return Entry(month=month, acct=acct, backfill_id=bid, values=(Decimal("1.00"),))


def test_per_id_months_that_would_mark_unapplied_rows_are_refused(monkeypatch):
    entries = [_entry("a", 1, "2023-12"), _entry("b", 2, "2023-11")]
    planned = {(e.backfill_id, e.acct, e.month) for e in entries}
    monkeypatch.setattr(tables, "pending_keys", lambda *a: planned)
    prepare_mod._check_per_id_marks(None, 7, ("a", "b"), entries)  # type: ignore[arg-type]  # exactly: fine
    monkeypatch.setattr(tables, "pending_keys", lambda *a: planned | {("a", 3, "2023-11")})
    with pytest.raises(InputError, match="a 2023-11 lie outside their id's backfill_month.*nothing was written"):
        prepare_mod._check_per_id_marks(None, 7, ("a", "b"), entries)  # type: ignore[arg-type]


# ------------------------------------------------------------------ verify, report, sources


def _report(**kw: Any) -> VerifyReport:
    return VerifyReport(("bf-1",), 2, 3, 4, (), **kw)


def test_verify_result_shows_its_lines(capsys):
    r = api.VerifyResult(("bf-1",), 2, 3, 4, ())
    r.show()
    assert capsys.readouterr().out.strip() == "\n".join(r.lines())


def _processor(cfg: Config | None = None) -> api.IcebergBackfillProcessor:
    proc = object.__new__(api.IcebergBackfillProcessor)
    proc.config, proc.catalog, proc.spark = cfg or Config(), object(), None  # type: ignore[assignment]
    return proc


def test_verify_backfill_notes_that_a_month_does_not_narrow_it(monkeypatch):
    monkeypatch.setattr(api, "_verify", lambda cfg, cat, ids, sample: _report(notes=("n",)))
    r = api.verify_backfill(_processor(), "bf-1", backfill_month="2023-12")
    assert isinstance(r, api.VerifyResult) and r.notes[0] == "n" and "2023-12" in r.notes[1]
    with pytest.raises(InputError, match="needs backfill_id"):
        api.verify_backfill(_processor())
    with pytest.raises(InputError, match="'23-12'"):
        api.verify_backfill(_processor(), "bf-1", backfill_month="23-12")


def test_a_processor_with_tables_or_a_session_is_refused():
    with pytest.raises(ConfigError, match="not both"):
        api._processor_for(_processor(), target_table="db.t")
    with pytest.raises(ConfigError, match="two different Spark sessions"):
        api._processor_for(FakeSession({}), FakeSession({}))  # type: ignore[arg-type]
    proc = _processor()
    assert api._processor_for(proc) is proc


# ------------------------------------------------------------------ backfill --report --verify


def _args(**kw: Any) -> argparse.Namespace:
    base = {"backfill_id": ["bf-1"], "backfill_month": None, "resume_from": None, "dry_run": False,
            "method": "merge", "report": True, "verify": True}
    return argparse.Namespace(**{**base, **kw})


@pytest.fixture()
def fake_run(monkeypatch):
    """cli.run with the catalog, planning, execution and audit replaced by recorders."""
    calls: list[str] = []
    prepared = SimpleNamespace(run_id="run-1", backfill_ids=("bf-1",), cfg=Config(),
                               plan=SimpleNamespace(tasks=(), entries=(), rejected=()), already_committed={})
    result = SimpleNamespace(summary_lines=lambda: ["summary"], failed_partitions=(), not_started=(),
                             verified=True, branch="backfill_0123456789ab", backfill_ids=("bf-1",))

    def execute(*a, **k):
        calls.append(f"execute verify={k.get('verify')}")
        return result

    monkeypatch.setattr(options, "catalog_from_config", lambda cfg: (None, None))
    monkeypatch.setattr(cli_run, "prepare", lambda *a, **kw: prepared)
    monkeypatch.setattr(cli_run, "execute", execute)
    monkeypatch.setattr(cli_run, "load_audit_rows", lambda cat, cfg, bid, run_id: calls.append(run_id) or [])
    return SimpleNamespace(calls=calls, result=result)


def test_verify_runs_inside_the_run_before_publish_and_the_report_follows(fake_run, capsys):
    assert cli_run._run_backfill(_args(), Config(), None) == 0
    out = capsys.readouterr().out
    assert fake_run.calls == ["execute verify=True", "run-1"]
    assert "report: no audit rows of bf-1 in run run-1" in out


def test_a_failed_verification_exits_1_says_main_is_untouched_and_the_report_still_prints(fake_run):
    fake_run.result.verified = False
    with pytest.raises(VerificationFailed, match="main is untouched and branch backfill_0123456789ab holds the run"):
        cli_run._run_backfill(_args(), Config(), None)
    assert fake_run.calls == ["execute verify=True", "run-1"]


def test_a_failed_run_skips_verify_but_reports(fake_run):
    fake_run.result.failed_partitions = ("2024-01",)
    with pytest.raises(Exception, match="failed after retries"):
        cli_run._run_backfill(_args(), Config(), None)
    assert fake_run.calls == ["execute verify=True", "run-1"]


def test_dry_run_says_report_and_verify_did_not_run(fake_run, capsys):
    assert cli_run._run_backfill(_args(dry_run=True), Config(), None) == 0
    assert "not run, a dry run writes nothing" in capsys.readouterr().out and fake_run.calls == []
