"""Commands that change tables: ``setup``, ``backfill``, ``verify`` and the ``demo`` that chains them."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import backfill.cli.options as options
from actors import runtime
from backfill.cli.progress import reporter_for
from backfill.config import SPARK_ENGINES, Config
from backfill.core.plan import merge_batches
from backfill.core.results import RunResult
from backfill.errors import ConfigError, ExitCode, RunFailed, RunStopped, VerificationFailed
from backfill.ops.prepare import prepare
from backfill.ops.report import build_report, render
from backfill.ops.run import execute
from backfill.ops.sample_data import SampleSpec
from backfill.ops.setup import setup_tables
from backfill.ops.sql_method import run_script
from backfill.ops.status import load_audit_rows
from backfill.ops.stop_signal import StopSignal
from backfill.ops.verify import verify_backfill
from backfill.prepared import PreparedRun
from cluster.metastore import EmbeddedMetastore

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


def cmd_setup(args: argparse.Namespace) -> int:
    cfg = options.config_from_args(args)
    _, catalog = options.catalog_from_config(cfg)
    sample = None
    if args.sample_data:
        sample = SampleSpec(accounts=args.accounts, months=args.months, first_month=args.first_month,
                            staged_accounts=args.staged_accounts, backfill_id=args.backfill_id,
                            seed=args.seed)
    for line in setup_tables(catalog, cfg, sample).lines():
        print(line)
    return ExitCode.OK


def cmd_backfill(args: argparse.Namespace) -> int:
    print(f"backfill {', '.join(args.backfill_id)}: checking options and configuration", flush=True)
    cfg = options.config_from_args(args)
    # a Ray run is armed before planning, so a stop at any point of it exits 7; a dry run
    # or a SQL-script run keeps the default handlers (a stop ends it at once)
    on_ray = args.method != "sql" and not args.dry_run
    with StopSignal() if on_ray else contextlib.nullcontext() as stop:
        return _run_backfill(args, cfg, stop)


def _run_backfill(args: argparse.Namespace, cfg: Config, stop: StopSignal | None) -> int:
    print(f"opening catalog {cfg.catalog.name!r} ({cfg.catalog.type})", flush=True)
    resolved, catalog = options.catalog_from_config(cfg)
    print("reading and validating the pending staged entries, then planning", flush=True)
    # a run that will execute does not wait for the array-length check (it reports it
    # before publishing); a dry run and --method sql print every note of the plan first
    defer = not args.dry_run and args.method != "sql"
    prepared = prepare(cfg, catalog, args.backfill_id, args.backfill_month, args.resume_from,
                       defer_array_check=defer)
    _print_plan(prepared, args.dry_run)
    if args.dry_run:
        if args.report or args.verify:
            print("--report/--verify: not run, a dry run writes nothing")
        return ExitCode.OK
    if args.method == "sql":
        result = run_script(prepared, resolved, catalog, progress=reporter_for(sys.stdout), verify=args.verify)
    else:
        result = execute(prepared, resolved, catalog, progress=reporter_for(sys.stdout), stop=stop,
                         verify=args.verify)
    for line in result.summary_lines():
        print(line)
    try:
        raise_for_result(result)
    finally:
        if args.report:
            _print_run_report(cfg, catalog, prepared)
    return ExitCode.OK


def raise_for_result(result: RunResult) -> None:
    """The error (and so the exit code) of a run that did not end published and verified."""
    if result.failed_partitions:
        raise RunFailed(f"{len(result.failed_partitions)} partition(s) failed after retries; "
                        "rerun the same command to resume")
    if result.not_started:
        raise RunStopped(f"{len(result.not_started)} partition(s) not started; rerun the same command to resume")
    if result.verified is False:
        where = (f"main is untouched and branch {result.branch} holds the run (drop it with "
                 f"`rollback --backfill-id ...`)" if result.branch else "its commits are on main (--no-wap)")
        raise VerificationFailed(f"verification of {', '.join(result.backfill_ids)} found mismatches; {where}")


def _print_run_report(cfg: Config, catalog: Catalog, prepared: PreparedRun) -> None:
    """``--report``: the ``report`` of this run only (its run id), per backfill id, from the audit table."""
    for bid in prepared.backfill_ids:
        rows = load_audit_rows(catalog, cfg, bid, prepared.run_id)
        print(render(build_report(rows, bid)) if rows else f"report: no audit rows of {bid} in run {prepared.run_id}")


def _print_plan(prepared: PreparedRun, each_partition: bool) -> None:
    plan = prepared.plan
    print(f"plan: {len(plan.tasks)} partition(s) for {len(plan.entries)} entries "
          f"({len(prepared.already_committed)} already committed), "
          f"{len(plan.rejected)} entries rejected, max parallel {prepared.cfg.max_parallel}")
    if each_partition:
        print(_sessions_line(prepared))
        for t in plan.tasks:
            print(f"  {t.partition}: {len(t.entries)} entries, {t.accounts} accounts, "
                  f"months {t.first_month}..{t.months[-1]}")


def _sessions_line(prepared: PreparedRun) -> str:
    """What a run of this plan would start on Ray (said by --dry-run, which starts nothing)."""
    cfg = prepared.cfg
    merges = len(merge_batches(list(prepared.plan.tasks), cfg.run.partitions_per_merge, cfg.max_parallel))
    s = cfg.spark
    keep = (f"kept warm {cfg.run.keep_warm_seconds:.0f} s after the run" if cfg.run.keep_warm_seconds > 0
            else "ended with the run")
    sessions = runtime.sessions_for(cfg, merges)
    if s.executor_cores is None and runtime.cluster_address(cfg):
        shape = (f"{s.num_executors} executor(s), cores and memory from the cluster's free CPUs "
                 f"when the run starts ([spark] executor_cores and executor_memory fix them)")
    else:
        sized = runtime.sized(cfg, sessions).spark
        how = (f"{runtime.local_budget().describe(sessions, s.num_executors)}; "
               if s.executor_cores is None or s.executor_memory is None else "")
        shape = (f"{s.num_executors} executor(s) x {sized.executor_cores} core(s) x {sized.executor_memory} "
                 f"({how}{runtime.session_cpus(runtime.sized(cfg, sessions)):g} Ray CPUs each)")
    return (f"would run {merges} MERGE(s), up to {cfg.max_parallel} at once, in up to "
            f"{sessions} {runtime.ENGINE_NAMES[runtime.engine_for(cfg)]} Spark session(s) of {shape}, {keep}")


def cmd_verify(args: argparse.Namespace) -> int:
    cfg = options.config_from_args(args)
    sample = options.parse_accounts(args.sample_accounts) if args.sample_accounts else None
    _, catalog = options.catalog_from_config(cfg)
    print(f"verifying {', '.join(args.backfill_id)}: reading its commits and staged rows", flush=True)
    report = verify_backfill(cfg, catalog, args.backfill_id, sample, args.as_of,
                             progress=lambda line: print(line, flush=True))
    for line in report.lines():
        print(line)
    if not report.ok:
        raise VerificationFailed(f"verification of {', '.join(args.backfill_id)} found mismatches")
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Setup with sample data, a backfill, and a verification, on a fresh embedded stack."""
    wh = _fresh_demo_warehouse(args.warehouse)
    args.warehouse = str(wh)
    cfg = options.config_from_args(args)
    print(f"1/4 starting the embedded catalog (Hive metastore, Derby under {wh})")
    resolved, catalog = options.catalog_from_config(cfg)
    spec = SampleSpec(accounts=args.accounts, months=args.months, staged_accounts=args.staged_accounts)
    print(f"2/4 creating tables with sample data ({spec.accounts} accounts x {spec.months} months)")
    for line in setup_tables(catalog, cfg, spec).lines():
        print("    " + line)
    print(f"3/4 backfilling {spec.backfill_id} with up to {cfg.max_parallel} MERGEs at once")
    result = execute(prepare(cfg, catalog, [spec.backfill_id]), resolved, catalog,
                     progress=reporter_for(sys.stdout, indent="    "))
    for line in result.summary_lines():
        print("  " + line)
    print("4/4 verifying every backfilled partition against its snapshot before the backfill")
    report = verify_backfill(cfg, catalog, [spec.backfill_id], progress=lambda line: print("  " + line, flush=True))
    for line in report.lines():
        print("  " + line)
    if not args.keep_running:
        EmbeddedMetastore(wh).stop()
    ok = result.succeeded and report.ok
    print("demo " + ("succeeded" if ok else "FAILED"))
    return ExitCode.OK if ok else ExitCode.VERIFY_MISMATCH


def _fresh_demo_warehouse(warehouse: str | None) -> Path:
    """The demo's warehouse folder, emptied if an earlier demo made it; refuses any other folder."""
    wh = Path(warehouse or "./demo-warehouse").resolve()
    if wh.exists() and any(wh.iterdir()):
        if not (wh / ".metastore").exists():
            raise ConfigError(f"{wh} exists and was not made by the demo; pass another --warehouse")
        print(f"removing the previous demo warehouse {wh}")
        EmbeddedMetastore(wh).stop()
        shutil.rmtree(wh)
    return wh


def register(sub: Any) -> None:
    """Add ``setup``, ``backfill``, ``verify`` and ``demo``."""
    _register_setup(sub)
    _register_backfill(sub)
    p = sub.add_parser("verify", help="check a backfill cell by cell against the table before it")
    options.add_common_options(p)
    p.add_argument("--backfill-id", action="append", required=True, help="backfill id (repeatable)")
    p.add_argument("--sample-accounts", help="comma-separated accounts to check (default: all)")
    p.add_argument("--as-of", type=int, help="snapshot id to check instead of the current one")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("demo", help="fresh embedded stack: setup with sample data, backfill, verify")
    options.add_common_options(p)
    _add_sample_size_options(p)
    p.add_argument("--max-parallel", type=int, default=2, help="MERGEs at once (default 2)")
    p.add_argument("--keep-running", action="store_true", help="leave the catalog service running")
    options.add_layout_options(p)
    p.set_defaults(func=cmd_demo)


def _add_sample_size_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accounts", type=int, default=200, help="sample accounts (default 200)")
    p.add_argument("--months", type=int, default=24, help="sample months (default 24)")
    p.add_argument("--staged-accounts", type=int, default=40, help="accounts with staged entries (default 40)")


def _register_setup(sub: Any) -> None:
    p = sub.add_parser("setup", help="create target, staging and audit tables (optionally with sample data)")
    options.add_common_options(p)
    p.add_argument("--sample-data", action="store_true", help="fill an empty target and stage sample entries")
    _add_sample_size_options(p)
    p.add_argument("--first-month", default="2022-01", help="first sample month (default 2022-01)")
    p.add_argument("--backfill-id", default="bf-demo-001", help="backfill id of the sample entries")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    options.add_layout_options(p)
    p.set_defaults(func=cmd_setup)


def _register_backfill(sub: Any) -> None:
    p = sub.add_parser("backfill", help="apply pending staged entries to the target table")
    options.add_common_options(p)
    p.add_argument("--backfill-id", action="append", required=True,
                   help="backfill id to apply; repeat to consolidate several backfills into one run")
    p.add_argument("--backfill-month", help="only entries of this month (YYYY-MM)")
    p.add_argument("--resume-from", help="skip target partitions before this month (YYYY-MM)")
    p.add_argument("--max-parallel", type=int,
                   help="MERGEs running at once, over all actors (default 2; 1 on a hadoop catalog)")
    p.add_argument("--partitions-per-actor", type=int,
                   help="MERGEs one actor runs at once in its Spark session (default 2)")
    p.add_argument("--partitions-per-merge", type=int,
                   help="partitions applied by one MERGE and one commit (default 12; 1 = one per partition)")
    p.add_argument("--retries", type=int, help="extra attempts per partition on transient failure (default 3)")
    p.add_argument("--order", choices=["newest", "oldest"], help="partition order (default newest)")
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local instance)")
    p.add_argument("--keep-warm", type=float, metavar="SECONDS",
                   help="keep the Spark sessions this long after the run for the next run to reuse "
                        "(default 0: end them; see `iceberg-backfill sessions`)")
    p.add_argument("--iceberg-jar", help="path to iceberg-spark-runtime-3.5_2.12 jar (default: bundled)")
    p.add_argument("--spark-engine", choices=list(SPARK_ENGINES),
                   help="raydp: executors as Ray actors; local: Spark in the partition actor's own JVM; auto "
                        "(default): local when the run starts its own Ray, RayDP when it joins a cluster")
    p.add_argument("--method", choices=["merge", "sql"], default="merge",
                   help="merge: partition actors (default); sql: run the generate-sql script in one session")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit without writing")
    p.add_argument("--report", action="store_true",
                   help="at the end, print the report of this run (as `report --run-id`), also after a failure")
    p.add_argument("--verify", action="store_true",
                   help="once every partition is committed on the run's branch, check each commit cell by cell "
                        "(as `verify`) before publishing; on a mismatch main is left untouched and the exit code is 1")
    p.add_argument("--no-wap", action="store_true",
                   help="commit each MERGE straight to main instead of publishing the whole run in one step "
                        "(readers then see a run part way; [run] write_audit_publish = false)")
    p.set_defaults(func=cmd_backfill)
