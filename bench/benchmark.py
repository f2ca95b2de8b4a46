"""Benchmark: seed-style baseline vs the engine vs variants vs a hand-written MOR MERGE.

    python -m bench.benchmark                  # default size (20,000 x 24 x 4, 1 %, 12 months)
    python -m bench.benchmark --tiny           # CI smoke size
    python -m bench.benchmark --help

One run generates the data once, writes it with pyiceberg into a base table, then gives
every strategy its own copy (``register_table`` on the base metadata: the copies share
the immutable data files, commit independently). One RayDP session (one benchmark actor)
is reused for all strategies; only the backfill work is timed (session start, data
generation and verification are reported separately). Each strategy's result is checked
cell by cell against ``bench.reference_model.apply_rule`` (affected accounts) and against
the untouched base (every other row); a strategy that fails the check is reported FAILED.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backfill.config import (
    DEFAULT_HISTORY_COLUMNS,
    ENGINE_RAYDP,
    CatalogConfig,
    Config,
    RunConfig,
    SparkConfig,
    TableConfig,
)
from backfill.core.entries import validate_rows
from backfill.core.months import parse_month
from backfill.core.plan import merge_batches, plan_run
from backfill.iceberg import tables
from backfill.iceberg.schema import staging_schema
from bench.data import BenchSize, staged_entries, target_arrow
from bench.reference_model import apply_rule
from bench.row_groups import can_hold
from bench.strategies import DEFAULT, STRATEGIES, baseline_statements, by_name, handwritten_statement
from bench.worker import BenchWorker
from cluster.catalog import load_pyiceberg_catalog, resolve_catalog
from cluster.metastore import EmbeddedMetastore

REPO = Path(__file__).resolve().parent.parent
BACKFILL_ID = "bf-bench"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=20_000)
    p.add_argument("--months", type=int, default=24, help="months (partitions) in the target")
    p.add_argument("--columns", type=int, default=4, help="history columns")
    p.add_argument("--affected", type=float, default=0.01, help="fraction of accounts with staged entries")
    p.add_argument("--staged-months", type=int, default=12, help="newest months staged per affected account")
    p.add_argument("--buckets", type=int, default=8,
                   help="bucket(N, acct) of the partition spec (default 8: ~0.5 MB per month and bucket "
                        "at the default size; 64 makes 63 KB files, see README 'Performance')")
    p.add_argument("--strategies", nargs="*", help="subset to run (baseline is always included)")
    p.add_argument("--no-scaling", action="store_true", help="skip the table-size and fraction scaling runs")
    p.add_argument("--no-baseline", action="store_true",
                   help="quick comparison of variants only: skip the baseline (no ratios against it)")
    p.add_argument("--tiny", action="store_true",
                   help="CI smoke size: 200 accounts x 4 months x 2 columns, 5 %%, 2 months staged")
    p.add_argument("--executor-cores", type=int, default=2)
    p.add_argument("--executor-memory", default="2g")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder for benchmark.json/.png")
    p.add_argument("--keep-warehouse", action="store_true")
    p.add_argument("--stack", choices=("embedded", "seaweed"), default="embedded",
                   help="catalog and storage: the embedded Hive metastore on local disk (default), or "
                        "SeaweedFS's Iceberg REST catalog with the tables on S3 (tests/stacks.py; "
                        "counts S3 requests per strategy; writes benchmark_seaweed.json/.png)")
    a = p.parse_args(argv)
    if a.tiny:
        a.accounts, a.months, a.columns, a.affected, a.staged_months, a.buckets = 200, 4, 2, 0.05, 2, 4
    return a


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:

        self.a = a
        self.warehouse = Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
        self.stack = _start_stack(a.stack)
        catalog = (self.stack.catalog_config() if self.stack else
                   CatalogConfig(type="embedded", warehouse=str(self.warehouse)))
        stack_conf = self.stack.spark_conf() if self.stack else {}
        self.cfg = Config(
            tables=TableConfig(target_table="bench.base", staging_table="bench.staging",
                               audit_table="bench.audit",
                               history_columns=DEFAULT_HISTORY_COLUMNS[:a.columns], window=36,
                               buckets=a.buckets),
            catalog=catalog,
            # the strategies share one RayDP session, and memory is sampled from its executor actors
            spark=SparkConfig(engine=ENGINE_RAYDP, executor_memory=a.executor_memory, executor_cores=a.executor_cores,
                              conf={"spark.sql.shuffle.partitions": "4",
                                    "spark.driver.memory": "2g", **stack_conf}),
            run=RunConfig(),
        ).validated()

    # ------------------------------------------------------------------ set-up

    def start(self) -> None:
        import ray


        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        t0 = time.monotonic()
        self.resolved = resolve_catalog(self.cfg.catalog)
        self.catalog = load_pyiceberg_catalog(self.resolved)
        self.metastore_seconds = time.monotonic() - t0
        if not ray.is_initialized():
            ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}})

        t0 = time.monotonic()
        self.worker = ray.remote(BenchWorker).options(num_cpus=1, max_concurrency=4).remote(
            self.cfg, self.resolved.spark_conf(), "bench")
        ray.get(self.worker.ping.remote())
        self.session_seconds = time.monotonic() - t0
        _log(f"metastore {self.metastore_seconds:.1f} s, Spark session {self.session_seconds:.1f} s")

    def dataset(self, tag: str, accounts: int, affected_accounts_of: int | None = None,
                affected: float | None = None, reuse: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write base table ``bench.base_<tag>`` and its staging; plan the tasks.

        With ``reuse``, that data set's target table is used as is (only staging is new).
        """

        a = self.a
        size = BenchSize(accounts=accounts, months=a.months, columns=a.columns,
                         affected=a.affected if affected is None else affected,
                         staged_months=a.staged_months)
        base_table = reuse["cfg"].tables.target_table if reuse else f"bench.base_{tag}"
        cfg = dataclasses.replace(self.cfg, tables=dataclasses.replace(
            self.cfg.tables, target_table=base_table, staging_table=f"bench.staging_{tag}"))
        t0 = time.monotonic()
        arrow = reuse.get("arrow") if reuse else None
        if reuse:
            n_rows = reuse["rows"]
        else:
            arrow = target_arrow(cfg, size)
            target, _ = tables.create_target(self.catalog, cfg)
            target.append(arrow)
            n_rows = arrow.num_rows
        if not self.stack:
            arrow = None  # copies are registered on the base metadata: the rows are not needed again
        staging, _ = tables.create_staging(self.catalog, cfg)
        # staged rows: the affected accounts are drawn from the first ``affected_accounts_of``
        # accounts, so a larger table can get exactly the same staged entries
        src = dataclasses.replace(size, accounts=affected_accounts_of or accounts)
        srows = staged_entries(cfg, src, BACKFILL_ID)

        now = datetime.now(timezone.utc)
        for r in srows:
            r["created_at"] = now
        staging.append(tables.to_arrow(srows, staging_schema(cfg)))
        target = self.catalog.load_table(tables.identifier(cfg, "target"))
        staging = self.catalog.load_table(tables.identifier(cfg, "staging"))
        entries = validate_rows(srows, [hc.value_column for hc in cfg.tables.history_columns])
        plan = plan_run(entries, tables.partitions(target, cfg.tables.month_column), cfg.tables.window)
        files = list(target.inspect.files().column("file_size_in_bytes").to_pylist())
        ds = {"tag": tag, "cfg": cfg, "size": size, "rows": n_rows, "srows": srows, "arrow": arrow,
              "entries": entries, "tasks": plan.tasks, "metadata": target.metadata_location,
              "staging_snapshot": staging.current_snapshot().snapshot_id,
              "data_files": len(files), "data_bytes": int(sum(files)),
              "seconds": time.monotonic() - t0,
              "accounts_affected": len({r["acct"] for r in srows})}
        _log(f"dataset {tag}: {n_rows} rows in {len(files)} files ({sum(files) / 1e6:.1f} MB), "
             f"{len(srows)} staged entries, {len(plan.tasks)} partitions to rewrite, "
             f"{ds['seconds']:.1f} s")
        self._expected(ds)
        return ds

    def _expected(self, ds: dict[str, Any]) -> None:
        """Reference-model result for the affected accounts (once per data set)."""
        import ray


        cfg = ds["cfg"]
        accts = sorted({r["acct"] for r in ds["srows"]})
        ray.get(self.worker.set_cfg.remote(cfg))
        before = ray.get(self.worker.rows_of.remote(cfg.tables.target_table, accts))
        by_acct: dict[int, list] = {}
        for r in ds["srows"]:
            by_acct.setdefault(r["acct"], []).append(
                (r["acct"], r["backfill_month"],
                 {hc.array_column: r[hc.value_column] for hc in cfg.tables.history_columns}))
        expected: dict = {}
        for acct in accts:
            sub = {k: v for k, v in before.items() if k[0] == acct}
            expected.update(apply_rule(sub, by_acct[acct], cfg.tables.window))
        changed = sum(1 for k in expected if expected[k] != before[k])
        w = cfg.tables.window

        matched = sum(1 for (acct, p) in before
                      if any(0 <= parse_month(p) - parse_month(m) <= w - 1 for (_, m, _) in by_acct[acct]))
        ds.update(accts=accts, before=before, expected=expected, rows_changed=changed,
                  rows_matched=matched)

    def _write_copy(self, ds: dict[str, Any], table: str, properties: dict[str, str]) -> None:
        """``table``: a new target with the data set's rows, written the way its base was."""
        version = int(properties.pop("format-version", ds["cfg"].tables.format_version))  # set at creation only
        tcfg = dataclasses.replace(ds["cfg"], tables=dataclasses.replace(ds["cfg"].tables, target_table=table,
                                                                         format_version=version))
        target, _ = tables.create_target(self.catalog, tcfg)
        target.append(ds["arrow"])
        if properties:
            with target.transaction() as tx:
                tx.set_properties(**properties)

    # ------------------------------------------------------------------ one strategy

    def run_strategy(self, ds: dict[str, Any], strategy: Any, label: str | None = None) -> dict[str, Any]:
        import ray


        cfg = ds["cfg"]
        name = label or strategy.name
        table = f"bench.{name}_{ds['tag']}"
        w = self.worker
        ray.get(w.set_cfg.remote(cfg))
        if self.stack:  # SeaweedFS's REST catalog cannot register a table: the same rows written again
            self._write_copy(ds, table, dict(strategy.properties))
        else:
            ray.get(w.copy_table.remote(ds["metadata"], table, dict(strategy.properties)))
        if strategy.sort_by_account:
            ray.get(w.sort_by_account.remote(table))
        state0 = ray.get(w.table_state.remote(table))
        best = can_hold(self.catalog.load_table(table), ds["tasks"], cfg.tables.month_column,
                        cfg.tables.account_column)
        tcfg = dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, target_table=table))
        statements = None
        if strategy.runner == "baseline":
            months = sorted({e.month for e in ds["entries"]})
            statements = {t.partition: baseline_statements(tcfg, t.partition, months, BACKFILL_ID)
                          for t in ds["tasks"]}
        elif strategy.runner == "handwritten":
            statements = {t.partition: [handwritten_statement(tcfg, t.partition, BACKFILL_ID)]
                          for t in ds["tasks"]}
        # the worker's cfg must point at this data set's staging table
        ray.get(w.set_cfg.remote(cfg))
        merges = (sum(len(v) for v in statements.values()) if statements else
                  len(merge_batches(list(ds["tasks"]), strategy.per_merge, strategy.parallel)))
        _log(f"{name}: running {len(ds['tasks'])} partitions ({merges} MERGEs)")
        requests0 = self.stack.s3_requests() if self.stack else {}
        res = ray.get(w.run.remote(strategy.runner, table, list(ds["tasks"]), BACKFILL_ID,
                                   ds["staging_snapshot"], strategy.parallel, statements, strategy.per_merge,
                                   dict(strategy.session_conf)))
        requests = _requests_between(requests0, self.stack.s3_requests()) if self.stack else None
        totals = ray.get(w.commit_totals.remote(table, state0["snapshots"]))
        state1 = ray.get(w.table_state.remote(table))
        # ---- verification (not timed)
        t0 = time.monotonic()
        failures = [o for o in res["outcomes"] if o["status"] not in ("committed", "noop")]
        actual = ray.get(w.rows_of.remote(table, ds["accts"]))
        wrong = [k for k in set(actual) | set(ds["expected"]) if actual.get(k) != ds["expected"].get(k)]
        other = ray.get(w.unaffected_differences.remote(table, cfg.tables.target_table, ds["accts"]))
        ok = (not failures and not wrong and other["differing_rows"] == 0
              and other["rows"] == other["base_rows"])
        verify_seconds = time.monotonic() - t0
        compaction = None
        if strategy.compact and ok:
            before_compact = self.stack.s3_requests() if self.stack else {}
            comp = ray.get(w.compact.remote(table, [t.partition for t in ds["tasks"]]))
            compact_requests = (_requests_between(before_compact, self.stack.s3_requests())
                                if self.stack else None)
            state2 = ray.get(w.table_state.remote(table))
            after = ray.get(w.rows_of.remote(table, ds["accts"]))
            compaction = {"seconds": round(comp["seconds"], 2), "rewritten_bytes": comp["rewritten_bytes"],
                          "rewritten_data_files": comp["rewritten_data_files"],
                          "files_after": state2["data_files"] + state2["delete_files"],
                          "delete_files_after": state2["delete_files"],
                          "verified": after == ds["expected"], "s3_requests": compact_requests}
            ok = ok and compaction["verified"]
            _log(f"{name}: compaction {compaction['seconds']} s, rewrote "
                 f"{comp['rewritten_bytes'] / 1e6:.2f} MB; files {state1['data_files'] + state1['delete_files']}"
                 f" -> {compaction['files_after']}")
        row_bytes = ds["data_bytes"] / max(1, ds["rows"])
        floor = ds["rows_changed"] * row_bytes
        written = totals["added-files-size"]
        out = {
            "strategy": name, "runner": strategy.runner, "description": strategy.description,
            "properties": dict(strategy.properties), "parallel": strategy.parallel,
            "partitions_per_merge": strategy.per_merge if strategy.runner == "engine" else 1,
            "dataset": ds["tag"], "verified": ok,
            "verify": {"engine_failures": failures[:3], "wrong_affected_rows": len(wrong),
                       "wrong_examples": [str(k) for k in sorted(wrong)[:3]], **other,
                       "seconds": round(verify_seconds, 1)},
            "wall_seconds": round(res["wall_seconds"], 2),
            "merges": merges,
            "commits": totals["commits"],
            "data_files_read_cow": totals["deleted-data-files"],
            "data_files_written": totals["added-data-files"],
            "delete_files_written": totals["added-delete-files"],
            "bytes_read_spark": res["spark_input_bytes"],
            "can_hold": best.as_dict(),
            "read_over_can_hold": (round(res["spark_input_bytes"] / best.bytes_can_hold, 2)
                                   if res["spark_input_bytes"] and best.bytes_can_hold else None),
            "bytes_removed": totals["removed-files-size"],
            "bytes_written": written,
            "records_written": totals["added-records"],
            "position_deletes": totals["added-position-deletes"],
            "dvs": totals["added-dvs"],
            "rows_updated": ds["rows_matched"],
            "rows_changed": ds["rows_changed"],
            "floor_bytes": int(floor),
            "written_over_floor": round(written / floor, 2) if floor else None,
            "peak_rss_bytes": res["peak_rss_bytes"],
            "files_before": state0["data_files"] + state0["delete_files"],
            "files_after": state1["data_files"] + state1["delete_files"],
            "delete_files_after": state1["delete_files"],
            "compaction": compaction,
            "s3_requests": requests,
        }
        _log(f"{name}: {'OK' if ok else 'FAILED'} {out['wall_seconds']} s, wrote "
             f"{written / 1e6:.2f} MB in {out['data_files_written']}+{out['delete_files_written']} files"
             + ("" if ok else f" -- {out['verify']}"))
        return out


def _ratios(results: list[dict[str, Any]]) -> None:
    base = next((r for r in results if r["runner"] == "baseline"), None)
    hand = next((r for r in results if r["runner"] == "handwritten"), None)
    for r in results:
        if base:
            r["time_vs_baseline"] = round(r["wall_seconds"] / base["wall_seconds"], 4)
            r["bytes_written_vs_baseline"] = (round(r["bytes_written"] / base["bytes_written"], 5)
                                              if base["bytes_written"] else None)
        if hand:
            r["time_vs_handwritten"] = round(r["wall_seconds"] / hand["wall_seconds"], 3)


def _mb(x: Any) -> str:
    return "-" if x is None else f"{x / 1e6:.2f}"


def table_lines(results: list[dict[str, Any]]) -> list[str]:
    head = (f"{'strategy':<22} {'ok':<3} {'wall s':>7} {'xBase':>6} {'xHand':>6} {'MERGEs':>6} "
            f"{'files rd(cow)':>13} {'files wr':>9} {'del wr':>6} {'MB read':>8} {'MB rm':>8} "
            f"{'MB wr':>8} {'xBase wr':>9} {'wr/floor':>8} {'rows':>6} {'peak GB':>7} {'files after':>11} "
            f"{'MB can hold':>11} {'read/can':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r['strategy']:<22} {'yes' if r['verified'] else 'NO':<3} {r['wall_seconds']:>7.1f} "
            f"{r.get('time_vs_baseline', 0):>6.3f} {r.get('time_vs_handwritten', 0):>6.2f} "
            f"{r['merges']:>6} {r['data_files_read_cow']:>13} {r['data_files_written']:>9} "
            f"{r['delete_files_written']:>6} {_mb(r['bytes_read_spark']):>8} {_mb(r['bytes_removed']):>8} "
            f"{_mb(r['bytes_written']):>8} {r.get('bytes_written_vs_baseline') or 0:>9.5f} "
            f"{r['written_over_floor'] or 0:>8.2f} {r['rows_updated']:>6} "
            f"{r['peak_rss_bytes'] / 2**30:>7.2f} {r['files_before']:>5}->{r['files_after']:<5} "
            f"{_mb(r['can_hold']['bytes_can_hold']):>11} {r['read_over_can_hold'] or 0:>8.2f}")
    return lines


def chart(results: list[dict[str, Any]], scaling: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if scaling else 2, figsize=(17 if scaling else 12, 5))
    names = [r["strategy"] + ("" if r["verified"] else " (FAILED)") for r in results]
    colors = ["tab:red" if r["runner"] == "baseline" else "tab:orange" if r["runner"] == "handwritten"
              else "tab:blue" for r in results]
    axes[0].barh(names, [r["wall_seconds"] for r in results], color=colors)
    axes[0].set_xlabel("wall time of the backfill (s)")
    axes[0].set_xscale("log")
    axes[1].barh(names, [max(1, r["bytes_written"]) / 1e6 for r in results], color=colors)
    floor = results[0]["floor_bytes"] / 1e6
    axes[1].axvline(floor, color="k", ls="--", label=f"floor {floor:.3f} MB")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("bytes written (MB, log)")
    axes[1].legend()
    axes[1].set_yticklabels([])
    if scaling:
        labels = [s["label"] for s in scaling]
        axes[2].bar(labels, [s["wall_seconds"] for s in scaling], color="tab:blue")
        axes[2].set_ylabel("engine wall time (s)")
        axes[2].tick_params(axis="x", rotation=30)
        axes[2].set_title("scaling (default engine)")
    fig.suptitle("iceberg-backfill MERGE strategies (same data, verified against the reference model)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import ray


    a = _args(argv)
    started = time.monotonic()
    bench = Bench(a)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        bench.start()
        ds = bench.dataset("main", a.accounts)
        results = [bench.run_strategy(ds, s) for s in by_name(a.strategies, a.no_baseline)]
        _ratios(results)
        scaling: list[dict[str, Any]] = []
        if not a.no_scaling:
            default = next(s for s in STRATEGIES if s.name == DEFAULT)
            main_default = next((r for r in results if r["strategy"] == DEFAULT), None)
            if main_default:
                scaling.append({"label": "1x table", **_brief(main_default, ds)})
            for factor in (2, 4):
                dsx = bench.dataset(f"x{factor}", a.accounts * factor, affected_accounts_of=a.accounts)
                scaling.append({"label": f"{factor}x table", **_brief(bench.run_strategy(dsx, default), dsx)})
            for frac in (0.001, 0.01, 0.1):
                if frac == a.affected and main_default:
                    scaling.append({"label": f"{frac:.1%} affected", **_brief(main_default, ds)})
                    continue
                dsf = bench.dataset(f"f{str(frac).replace('.', '_')}", a.accounts, affected=frac, reuse=ds)
                scaling.append({"label": f"{frac:.1%} affected", **_brief(bench.run_strategy(dsf, default), dsf)})
        doc = {
            "command": "python -m bench.benchmark " + " ".join(sys.argv[1:] if argv is None else argv),
            "scale": {"accounts": a.accounts, "months": a.months, "history_columns": a.columns,
                      "affected_fraction": a.affected, "staged_months": a.staged_months,
                      "buckets": a.buckets, "rows": ds["rows"], "data_files": ds["data_files"],
                      "data_bytes": ds["data_bytes"], "staged_entries": len(ds["srows"]),
                      "partitions_rewritten": len(ds["tasks"]), "rows_updated": ds["rows_matched"],
                      "rows_changed": ds["rows_changed"]},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(),
                        "memory_gb": round(__import__("psutil").virtual_memory().total / 2**30, 1),
                        "load_average_at_start": os.getloadavg()},
            "stack": a.stack,
            "session_start_seconds": round(bench.session_seconds, 1),
            "metastore_start_seconds": round(bench.metastore_seconds, 1),
            "data_generation_seconds": round(ds["seconds"], 1),
            "default_strategy": DEFAULT,
            "figures": {
                "wall_seconds": "time of the backfill work only (all partitions), session already started",
                "data_files_read_cow": "snapshot deleted-data-files: files a copy-on-write MERGE read and "
                                       "replaced (0 for merge-on-read, whose reads are in bytes_read_spark)",
                "bytes_read_spark": "Spark inputMetrics.bytesRead over all jobs of the run (executor totals "
                                    "from the status store): target + staging reads, matched-row counts "
                                    "and snapshot lookups included",
                "bytes_removed": "snapshot removed-files-size: bytes of the data files replaced (copy-on-write)",
                "bytes_written": "snapshot added-files-size: data + delete files/DVs written",
                "floor_bytes": "rows whose arrays change x average stored bytes per row of the table",
                "can_hold": "row groups (and their compressed bytes) of the touched partitions' data files "
                            "whose account min/max can hold an account of that partition's MERGE, before it "
                            "(bench/row_groups.py): what perfect min/max pruning still reads",
                "read_over_can_hold": "bytes_read_spark / can_hold.bytes_can_hold (issue 15's target: <= 2)",
                "rows_updated": "target rows matched by an entry in their window (same for every strategy)",
                "peak_rss_bytes": "sampled peak RSS of the benchmark actor + its JVM children + RayDP executors",
            },
            "results": results,
            "scaling": scaling,
            "total_seconds": round(time.monotonic() - started, 1),
        }
        print()
        print(f"scale: {a.accounts} accounts x {a.months} months x {a.columns} history columns, "
              f"{a.affected:.1%} of accounts, {a.staged_months} months staged, bucket({a.buckets}); "
              f"{ds['rows']} rows, {ds['data_files']} files, {ds['data_bytes'] / 1e6:.1f} MB; "
              f"{ds['rows_matched']} rows updated; floor {results[0]['floor_bytes'] / 1e6:.3f} MB")
        print(f"Spark session start {bench.session_seconds:.1f} s (not in wall times)")
        for line in table_lines(results):
            print(line)
        for r in results:
            if r.get("s3_requests"):
                req = r["s3_requests"]
                print(f"S3 requests, {r['strategy']}: {req['total']} "
                      f"({', '.join(f'{k} {v}' for k, v in req.items() if k != 'total')}), "
                      f"{req['total'] / max(1, len(ds['tasks'])):.0f} per partition")
        for r in results:
            c = r.get("compaction")
            if c:
                print(f"compaction after {r['strategy']} (`iceberg-backfill compact`): {c['seconds']:.1f} s, "
                      f"rewrote {c['rewritten_data_files']} files / {c['rewritten_bytes'] / 1e6:.2f} MB, files "
                      f"{r['files_after']} -> {c['files_after']} ({c['delete_files_after']} delete files), "
                      f"cells still equal to the model: {c['verified']}")
        if scaling:
            print("\nscaling (default engine):")
            for s in scaling:
                print(f"  {s['label']:<16} rows {s['table_rows']:>8} updated {s['rows_updated']:>6} "
                      f"wall {s['wall_seconds']:>6.1f} s  MB written {s['bytes_written'] / 1e6:>7.2f} "
                      f"files +{s['files_added']:<5} verified {s['verified']}")
        stem = "benchmark" if a.stack == "embedded" else f"benchmark_{a.stack}"
        (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=2, default=str))
        chart(results, scaling, out_dir / f"{stem}.png")
        print(f"\nwrote {out_dir / f'{stem}.json'} and {out_dir / f'{stem}.png'} "
              f"(total {doc['total_seconds']} s)")
        return 0 if all(r["verified"] for r in results) and all(s["verified"] for s in scaling) else 1
    finally:
        try:
            ray.get(bench.worker.shutdown.remote(), timeout=60)
        except Exception:
            pass
        if ray.is_initialized():
            ray.shutdown()
        try:

            EmbeddedMetastore(bench.warehouse).stop()
        except Exception:
            pass
        if bench.stack:
            bench.stack.stop()
        if not a.keep_warehouse:
            shutil.rmtree(bench.warehouse, ignore_errors=True)


def _start_stack(name: str) -> Any:
    """The catalog stack to measure on (None: the embedded default), started."""
    if name == "embedded":
        return None
    from tests.stacks import SeaweedStack, missing

    reason = missing(SeaweedStack)
    if reason:
        raise SystemExit(f"--stack {name}: {reason}")
    stack = SeaweedStack(catalog_name="bench_s3")
    stack.start()
    return stack


def _requests_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """S3 requests by type between two readings of the server's counters, and their total."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after)}
    delta = {k: v for k, v in delta.items() if v}
    return {**delta, "total": sum(delta.values())}


def _brief(r: dict[str, Any], ds: dict[str, Any]) -> dict[str, Any]:
    return {"table_rows": ds["rows"], "rows_updated": r["rows_updated"], "wall_seconds": r["wall_seconds"],
            "bytes_written": r["bytes_written"], "files_added": r["data_files_written"] + r["delete_files_written"],
            "verified": r["verified"], "written_over_floor": r["written_over_floor"],
            "accounts_affected": ds["accounts_affected"]}


if __name__ == "__main__":
    sys.exit(main())
