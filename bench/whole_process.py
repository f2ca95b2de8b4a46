"""What the user waits for: whole commands, each its own process, cold and warm, side by side.

    python -m bench.whole_process                  # default size and 4x the table
    python -m bench.whole_process --scales 1       # default size only
    python -m bench.whole_process --help

Contenders, each on its own copy of the same target (``register_table`` on one base
metadata file: the copies share the data files and commit independently) with the same
staged entries, one after another on an otherwise quiet machine:

- ``script``: a fresh ``python`` process with a local[2] pyspark session (the same Iceberg
  jar and catalog settings) running one hand-written merge-on-read MERGE per partition:
  what a data engineer writes by hand instead of this tool.
- ``cli_cold``: ``iceberg-backfill backfill`` as a fresh process on the embedded default (it
  starts its own local Ray and Spark session).
- ``cli_cluster_first``: the same command against a running Ray head (``ray start --head``,
  timed apart) with ``--keep-warm``: what a cluster's first run costs.
- ``cli_warm``: the next run right after it on another copy, reusing that warm session.
- ``floor_cold`` and ``floor_warm``: the least any Spark-based tool could do, to tell
  whether a target is reachable at all. One fresh ``python`` process with the script's
  local[2] session runs the tool's own batched MERGE (every partition in one statement,
  from staging, with its account predicate) and nothing else: no Ray, no planning, no
  audit, branch or staging update. ``floor_cold`` is its time from launch to the end of
  that MERGE; ``floor_warm`` is the same statement run next, in the same now warm JVM, on
  another copy: the MERGE alone, as a lower bound on any warm run (not a whole process).

Every contender's table is checked cell by cell against ``bench.reference_model`` for the
affected accounts and against the base for every other row before its time counts. Besides
wall time, each CLI run's time to its first line and its longest silence are recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from backfill.config import (
    DEFAULT_HISTORY_COLUMNS,
    ENGINE_AUTO,
    SPARK_ENGINES,
    CatalogConfig,
    Config,
    SparkConfig,
    TableConfig,
    config_toml,
)
from backfill.core.entries import validate_rows
from backfill.core.plan import Plan, plan_run
from backfill.iceberg import tables
from backfill.iceberg.schema import staging_schema
from backfill.sql.merge import merge_sql, staging_source_sql
from bench.data import BenchSize, staged_entries, target_arrow
from bench.reference_model import apply_rule
from bench.strategies import handwritten_statement
from cluster.catalog import load_pyiceberg_catalog, resolve_catalog
from cluster.jars import iceberg_runtime_jar
from cluster.spark_session import spark_conf

REPO = Path(__file__).resolve().parent.parent
BACKFILL_ID = "bf-bench"
CONTENDERS = ("script", "floor_cold", "floor_warm", "cli_cold", "cli_cluster_first", "cli_warm")
#: Contenders whose figures come out of one ``floor`` process (see the module docstring).
FLOORS = ("floor_cold", "floor_warm")
KEEP_WARM_SECONDS = 900
#: The ``ray`` command of this interpreter's environment.
RAY = str(Path(sys.executable).parent / "ray")

#: The hand-written alternative and the floor: a local[2] pyspark session running labelled
#: MERGEs in order (the script: one per partition; the floor: the tool's batched MERGE on
#: one copy, then on another), each reported as it ends.
SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pyspark.sql import SparkSession
    conf, statements = json.load(open(sys.argv[1]))
    builder = SparkSession.builder.master("local[2]").appName("handwritten-backfill")
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    for label, statement in statements:
        t0 = time.monotonic()
        spark.sql(statement).collect()
        print(f"{label} done: MERGE {time.monotonic() - t0:.2f} s", flush=True)
    spark.stop()
""")



def _log(msg: str) -> None:
    print(f"[whole-process {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` as its own process; wall time, first-line time and longest gap between lines
    (``_lines``: each line with its time since launch, for the caller, not for the JSON)."""
    t0 = time.monotonic()
    stamps: list[float] = []
    lines: list[tuple[float, str]] = []
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            stamps.append(time.monotonic() - t0)
            lines.append((stamps[-1], line))
            out.write(f"[{stamps[-1]:7.1f}s] {line}")
        code = proc.wait()
    wall = time.monotonic() - t0
    gaps = [b - a for a, b in zip([0.0, *stamps], [*stamps, wall], strict=True)]
    return {"exit_code": code, "wall_seconds": round(wall, 1),
            "first_line_seconds": round(stamps[0], 1) if stamps else None,
            "longest_silence_seconds": round(max(gaps), 1), "log": str(log), "_lines": lines}


class Stack:
    """The embedded catalog, the base table of one size and its copies."""

    def __init__(self, root: Path, columns: int, buckets: int) -> None:
        self.root = root
        self.cfg = Config(
            tables=TableConfig(target_table="bench.base", staging_table="bench.staging", audit_table="bench.audit",
                               history_columns=DEFAULT_HISTORY_COLUMNS[:columns], window=36, buckets=buckets),
            catalog=CatalogConfig(type="embedded", warehouse=str(root / "warehouse")),
            spark=SparkConfig(conf={"spark.sql.shuffle.partitions": "4"}),
        ).validated()
        self.resolved = resolve_catalog(self.cfg.catalog)
        self.catalog = load_pyiceberg_catalog(self.resolved)

    def tables_for(self, name: str) -> Config:
        ns = f"bench_{name}"
        return dataclasses.replace(self.cfg, tables=dataclasses.replace(
            self.cfg.tables, target_table=f"{ns}.accounts_history", staging_table=f"{ns}.backfill_staging",
            audit_table=f"{ns}.backfill_audit"))

    def base(self, size: BenchSize, staged_from: BenchSize) -> dict[str, Any]:
        """The base target of ``size`` and the staged rows ``staged_from`` draws (the same
        entries at every table size: its accounts are the first ones of every size)."""
        arrow = target_arrow(self.cfg, size)
        cfg = self.tables_for(f"base_{size.accounts}")
        target, _ = tables.create_target(self.catalog, cfg)
        target.append(arrow)
        srows = staged_entries(cfg, staged_from, BACKFILL_ID)
        files = target.inspect.files().column("file_size_in_bytes").to_pylist()
        return {"cfg": cfg, "rows": arrow.num_rows, "srows": srows, "metadata": target.metadata_location,
                "data_files": len(files), "data_bytes": int(sum(files))}

    def copy(self, base: dict[str, Any], name: str) -> Config:
        """A contender's target (a copy of the base), staging with the entries, audit table."""
        cfg = self.tables_for(name)
        ns = cfg.tables.target_table.split(".")[0]
        self.catalog.create_namespace(ns)
        self.catalog.register_table(tables.identifier(cfg, "target"), base["metadata"])
        staging, _ = tables.create_staging(self.catalog, cfg)
        tables.create_audit(self.catalog, cfg)
        now = datetime.now(timezone.utc)
        staging.append(tables.to_arrow([{**r, "created_at": now} for r in base["srows"]], staging_schema(cfg)))
        return cfg


def _toml(cfg: Config, path: Path, a: argparse.Namespace) -> Path:
    """The CLI runs' config, with the levers under measurement (``--executor-cores``,
    ``--spark-conf``, ``--spark-engine``)."""
    extra = dict(item.split("=", 1) for item in a.spark_conf)
    spark = dataclasses.replace(cfg.spark, executor_cores=a.executor_cores or cfg.spark.executor_cores,
                                conf={**cfg.spark.conf, **extra}, engine=a.spark_engine)
    path.write_text(config_toml(dataclasses.replace(cfg, spark=spark)))
    return path


def expected_and_check(stack: Stack, base: dict[str, Any]) -> Any:
    """A checker of a contender's table: the reference model on the affected accounts, the
    base on every other row (compared as Arrow, sorted by account and month)."""
    from pyiceberg.expressions import In, Not

    cfg = base["cfg"]
    t = cfg.tables
    accts = sorted({r["acct"] for r in base["srows"]})
    names = [t.account_column, t.month_column, *[h.array_column for h in t.history_columns]]

    def rows(table: Any, affected: bool) -> pa.Table:
        expr = In(t.account_column, accts)
        got = table.scan(row_filter=expr if affected else Not(expr), selected_fields=tuple(names)).to_arrow()
        return got.sort_by([(t.account_column, "ascending"), (t.month_column, "ascending")])

    def as_dict(tbl: pa.Table) -> dict:
        return {(r[t.account_column], r[t.month_column]): {h.array_column: r[h.array_column]
                                                           for h in t.history_columns}
                for r in tbl.to_pylist()}

    base_table = stack.catalog.load_table(tables.identifier(cfg, "target"))
    entries = [(r["acct"], r["backfill_month"], {h.array_column: r[h.value_column] for h in t.history_columns})
               for r in base["srows"]]
    expected = apply_rule(as_dict(rows(base_table, True)), entries, t.window)
    others = rows(base_table, False)

    def check(ccfg: Config) -> dict[str, Any]:
        table = stack.catalog.load_table(tables.identifier(ccfg, "target"))
        got = as_dict(rows(table, True))
        wrong = sum(1 for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        rest = rows(table, False)
        same_rest = rest.num_rows == others.num_rows and rest.equals(others)
        return {"wrong_affected_rows": wrong, "other_rows_unchanged": bool(same_rest),
                "verified": wrong == 0 and bool(same_rest)}
    return check


def run_size(stack: Stack, scale: int, a: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    staged_from = BenchSize(accounts=a.accounts, months=a.months, columns=a.columns, affected=a.affected)
    size = dataclasses.replace(staged_from, accounts=a.accounts * scale)
    t0 = time.monotonic()
    base = stack.base(size, staged_from)
    _log(f"scale {scale}x: {base['rows']:,} rows in {base['data_files']} files "
         f"({base['data_bytes'] / 1e6:.0f} MB), {len(base['srows']):,} staged entries, {time.monotonic() - t0:.0f} s")
    check = expected_and_check(stack, base)
    cfgs = {c: stack.copy(base, f"{c}_{scale}x") for c in CONTENDERS}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = []
    for name in CONTENDERS:
        if name == "floor_warm":  # measured by the floor_cold process
            continue
        cfg = cfgs[name]
        log = work / f"{name}_{scale}x.log"
        if name == "floor_cold":
            out += _floors(stack, cfgs, base, work / f"floor_{scale}x", env, check, scale)
            continue
        if name == "script":
            res = timed([sys.executable, str(_script_input(stack, cfg, base, work / f"script_{scale}x"))], log, env)
        else:
            toml = _toml(cfg, work / f"{name}.toml", a)
            cmd = [sys.executable, "-m", "backfill", "backfill", "--config", str(toml), "--backfill-id", BACKFILL_ID]
            run_env = dict(env)
            if name == "cli_cluster_first":  # cold on the cluster at every size: no session of an earlier size
                subprocess.run([sys.executable, "-m", "backfill", "sessions", "--config", str(toml), "--stop"],
                               cwd=REPO, env={**env, "RAY_ADDRESS": a.ray_address}, capture_output=True, check=True)
            if name != "cli_cold":
                cmd += ["--keep-warm", str(KEEP_WARM_SECONDS)]
                run_env["RAY_ADDRESS"] = a.ray_address
            else:
                run_env.pop("RAY_ADDRESS", None)
            res = timed(cmd, log, run_env)
        out.append(_counted(res, name, cfg, check, scale, base))
    return out


def _counted(res: dict[str, Any], name: str, cfg: Config, check: Any, scale: int,
             base: dict[str, Any]) -> dict[str, Any]:
    """``res`` checked cell by cell and labelled; logged."""
    res.pop("_lines", None)
    res.update(check(cfg) if res["exit_code"] == 0 else {"verified": False})
    res.update(contender=name, scale=scale, rows=base["rows"], data_mb=round(base["data_bytes"] / 1e6, 1),
               entries=len(base["srows"]))
    _log(f"{name} {scale}x: {res['wall_seconds']} s, exit {res['exit_code']}, "
         f"{'verified' if res['verified'] else 'NOT VERIFIED'}; first line {res['first_line_seconds']} s, "
         f"longest silence {res['longest_silence_seconds']} s")
    return res


def _floors(stack: Stack, cfgs: dict[str, Config], base: dict[str, Any], path: Path, env: dict[str, str],
            check: Any, scale: int) -> list[dict[str, Any]]:
    """floor_cold and floor_warm from one process: launch to the end of the first batched
    MERGE, then the second MERGE alone (see the module docstring)."""
    script = _floor_input(stack, cfgs, base, path)
    res = timed([sys.executable, str(script)], path.with_suffix(".log"), env)
    seconds = floor_seconds(res["_lines"])
    out = []
    for name in FLOORS:
        one = {k: v for k, v in res.items() if k != "_lines"}
        if name in seconds:
            one["wall_seconds"] = seconds[name]
        else:  # its MERGE never finished: not a figure
            one["exit_code"] = one["exit_code"] or 1
        out.append(_counted(one, name, cfgs[name], check, scale, base))
    return out


def floor_seconds(lines: list[tuple[float, str]]) -> dict[str, float]:
    """The floors' figures from the floor process's stamped lines: ``floor_cold`` is the
    launch-to-done time of the first MERGE's line, ``floor_warm`` the second MERGE's own time.

    >>> floor_seconds([(1.3, "WARN ..."), (16.6, "floor_cold done: MERGE 13.44 s"),
    ...                (21.9, "floor_warm done: MERGE 5.30 s")])
    {'floor_cold': 16.6, 'floor_warm': 5.3}
    """
    out: dict[str, float] = {}
    for stamp, line in lines:
        name, sep, rest = line.partition(" done: MERGE ")
        if sep and name in FLOORS:
            out[name] = round(stamp if name == "floor_cold" else float(rest.split()[0]), 1)
    return out


def _floor_input(stack: Stack, cfgs: dict[str, Config], base: dict[str, Any], path: Path) -> Path:
    """The floor script and its input: the tool's batched statement over every partition, per copy."""
    conf = _session_conf(stack, cfgs["floor_cold"])
    accounts = sorted({r["acct"] for r in base["srows"]})
    statements = []
    for name in FLOORS:
        cfg = cfgs[name]
        partitions = [t.partition for t in _plan(stack, cfg, base).tasks]
        statements.append((name, merge_sql(cfg, partitions, staging_source_sql(cfg, partitions, [BACKFILL_ID]),
                                           accounts)))
    path.with_suffix(".json").write_text(json.dumps([conf, statements]))
    path.with_suffix(".py").write_text(SCRIPT.replace("sys.argv[1]", repr(str(path.with_suffix(".json")))))
    return path.with_suffix(".py")


def _plan(stack: Stack, cfg: Config, base: dict[str, Any]) -> Plan:
    target = stack.catalog.load_table(tables.identifier(cfg, "target"))
    entries = validate_rows(base["srows"], [h.value_column for h in cfg.tables.history_columns])
    return plan_run(entries, tables.partitions(target, cfg.tables.month_column), cfg.tables.window)


def _session_conf(stack: Stack, cfg: Config) -> dict[str, str]:
    """The hand-written side's Spark settings: the tool's catalog and jar, a local[2] driver of 2 GB."""
    conf = spark_conf(stack.resolved.spark_conf(), cfg.spark, iceberg_runtime_jar(cfg.spark.iceberg_jar))
    conf["spark.driver.memory"] = "2g"
    return conf


def _script_input(stack: Stack, cfg: Config, base: dict[str, Any], path: Path) -> Path:
    """The hand-written script and its input (session settings, one MERGE per partition)."""
    conf = _session_conf(stack, cfg)
    tasks = _plan(stack, cfg, base).tasks
    statements = [(f"{t.partition} ({i}/{len(tasks)})", handwritten_statement(cfg, t.partition, BACKFILL_ID))
                  for i, t in enumerate(tasks, 1)]
    path.with_suffix(".json").write_text(json.dumps([conf, statements]))
    path.with_suffix(".py").write_text(SCRIPT.replace("sys.argv[1]", repr(str(path.with_suffix(".json")))))
    return path.with_suffix(".py")


def table_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| table | contender | wall s | x script | first line s | longest silence s | verified |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        script = next(x for x in results if x["scale"] == r["scale"] and x["contender"] == "script")
        ratio = r["wall_seconds"] / script["wall_seconds"]
        lines.append(f"| {r['scale']}x ({r['rows']:,} rows, {r['data_mb']} MB) | {r['contender']} | "
                     f"{r['wall_seconds']} | {ratio:.2f} | {r['first_line_seconds']} | "
                     f"{r['longest_silence_seconds']} | {'yes' if r['verified'] else 'NO'} |")
    return lines


def chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({r["scale"] for r in results})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(CONTENDERS)
    for i, name in enumerate(CONTENDERS):
        ys = [next((r["wall_seconds"] for r in results if r["scale"] == s and r["contender"] == name), 0)
              for s in scales]
        ax.bar([j + i * width for j in range(len(scales))], ys, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(scales))], [f"{s}x table" for s in scales])
    ax.set_ylabel("wall seconds (whole process)")
    ax.set_title("whole command, own process: hand-written script vs iceberg-backfill")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.whole_process", description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=20_000, help="accounts at scale 1")
    p.add_argument("--months", type=int, default=24)
    p.add_argument("--columns", type=int, default=4)
    p.add_argument("--affected", type=float, default=0.01, help="fraction of the scale-1 accounts staged")
    p.add_argument("--buckets", type=int, default=8)
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    p.add_argument("--executor-cores", type=int, help="[spark] executor_cores of the CLI runs (default: the tool's)")
    p.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a Spark setting of the CLI runs, e.g. spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 "
                        "(repeatable)")
    p.add_argument("--spark-engine", choices=list(SPARK_ENGINES), default=ENGINE_AUTO,
                   help="[spark] engine of the CLI runs (default: the tool's, auto: local for the cold run that "
                        "starts its own Ray, RayDP for the runs that join the Ray head)")
    p.add_argument("--ray-cpus", type=int, default=(os.cpu_count() or 2) + 1,
                   help="logical CPUs of the Ray head for the cluster runs (default: this machine's cores, as a "
                        "real node reports them, plus the spare RayDP's master takes while a session starts)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "whole_process.json")
    a = p.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="whole-process-logs-"))
    _log(f"logs of every command in {logs}")
    with tempfile.TemporaryDirectory(prefix="whole-process-") as tmp:
        stack = Stack(Path(tmp), a.columns, a.buckets)
        port = _free_port()
        t0 = time.monotonic()
        # loopback only, so without Ray's token authentication (a driver would need the token)
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                        f"--num-cpus={a.ray_cpus}", "--include-dashboard=false", "--disable-usage-stats"],
                       check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"})
        ray_start = round(time.monotonic() - t0, 1)
        a.ray_address = f"127.0.0.1:{port}"
        _log(f"Ray head on {a.ray_address} in {ray_start} s (not in the contenders' times)")
        results: list[dict[str, Any]] = []
        try:
            for scale in a.scales:
                results += run_size(stack, scale, a, logs)
        finally:
            subprocess.run([RAY, "stop", "--force"], capture_output=True)
            subprocess.run([sys.executable, "-m", "backfill", "catalog", "stop", "--warehouse",
                            stack.cfg.catalog.warehouse], cwd=REPO, capture_output=True)
    doc = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
           "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "ray_head_start_seconds": ray_start,
           "keep_warm_seconds": KEEP_WARM_SECONDS, "ray_head_cpus": a.ray_cpus,
           "executor_cores": a.executor_cores or "the tool's default", "spark_conf": a.spark_conf,
           "spark_engine": a.spark_engine,
           "results": results}
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    chart(results, a.out.with_suffix(".png"))
    print("\n".join(table_lines(results)))
    return 0 if all(r["verified"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
