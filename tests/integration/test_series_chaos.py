"""Seeded series chaos: corrections of corrections, run in random order, two at a time,
drivers killed (SIGKILL) and resumed in random order, while a reader polls main.

Three backfill ids correct the same cells, staged one after another (S1 oldest). The seed
(``BACKFILL_SERIES_SEED``, printed) fixes the order the drivers start in, which start
together, which are killed and after how long. What must hold at the end:

* the target equals an independent model of "the value staged last wins", cell by cell;
* every staging row ends applied or superseded, exactly one row per (id, acct, month);
* ``verify`` passes for every id;
* the reader never saw a run part way: in every read, each staged cell holds the same
  value in every partition of its window (the original history, or one id's value).
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import Counter
from decimal import Decimal

import pytest

from backfill.core.months import add_months, parse_month
from backfill.ops.sample_data import SampleSpec, account_ids
from backfill.ops.setup import setup_tables, stage_rows
from backfill.ops.verify import verify_backfill
from tests.integration.helpers import diff_tables, make_config, pyiceberg_catalog, read_rows, read_target
from tests.integration.runner_env import driver_process, write_toml
from tests.integration.test_series import newest_wins

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1500)]

SEED = int(os.environ.get("BACKFILL_SERIES_SEED", "20261202"))
IDS = ("S1", "S2", "S3")
FIRST, MONTHS = "2023-01", 8
STAGED_MONTHS = (FIRST, add_months(FIRST, 2))
MAX_DRIVER_RUNS = 12
DRIVER_TIMEOUT = 420


def _stage_series(catalog, cfg, rng: random.Random, accounts: list[int]) -> None:
    """One append per id, in order, so each id is staged after the one before."""
    for bid in IDS:
        rows = []
        for acct in accounts:
            for month in STAGED_MONTHS:
                vals = [None if rng.random() < 0.3 else Decimal(rng.randint(1, 99_999)).scaleb(-2) for _ in range(3)]
                if all(v is None for v in vals):
                    vals[0] = Decimal("1.00")
                rows.append({"backfill_id": bid, "acct": acct, "backfill_month": month, "balance": vals[0],
                             "payment": vals[1], "credit_limit": vals[2]})
        stage_rows(catalog, cfg, rows)
        time.sleep(0.05)


def _labels(table_rows: dict, before: dict, staged: list[dict], cfg) -> Counter:
    """Per staged cell, how many distinct sources its partitions show (1 = consistent)."""
    values = {(r["backfill_id"], r["acct"], r["backfill_month"], hc.array_column): r.get(hc.value_column)
              for r in staged for hc in cfg.tables.history_columns}
    out: Counter = Counter()
    for acct in {r["acct"] for r in staged}:
        for month in STAGED_MONTHS:
            for hc in cfg.tables.history_columns:
                seen = set()
                for (a, part), row in table_rows.items():
                    k = parse_month(part) - parse_month(month)
                    if a != acct or not 0 <= k < cfg.tables.window:
                        continue
                    arr, orig = row[hc.array_column] or [], before[(a, part)][hc.array_column] or []
                    now = arr[k] if k < len(arr) else None
                    was = orig[k] if k < len(orig) else None
                    ids = {b for b in IDS if values.get((b, acct, month, hc.array_column)) == now and now is not None}
                    seen.add("original" if now == was else (min(ids) if ids else f"?{now}"))
                out[len(seen)] += 1
    return out


def _reader(cfg, before, staged, stop: threading.Event, reads: list[Counter]) -> None:
    catalog = pyiceberg_catalog(cfg)
    while not stop.is_set():
        try:
            reads.append(_labels(read_target(catalog, cfg), before, staged, cfg))
        except Exception as exc:  # noqa: BLE001 - a read during a catalog hiccup is retried
            print(f"series chaos: reader retries after {type(exc).__name__}")
        time.sleep(0.3)


def _say(tmp_path, line: str) -> None:
    """Printed, and kept in ``series-chaos.log`` under the test's temporary folder (pytest
    keeps the last three), so a run without ``-s`` still leaves the account of what happened."""
    print(f"series chaos: {line}", flush=True)
    with (tmp_path / "series-chaos.log").open("a") as f:
        f.write(line + "\n")


def _wait(proc, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
        raise AssertionError(f"driver pid {proc.pid} did not end in {timeout} s")
    return int(proc.returncode)


def _drive(rng: random.Random, toml, address, tmp_path) -> tuple[int, int]:
    """Run every id to the end: one or two drivers at a time, some killed then resumed.

    Every driver started is killed when the test stops for any reason: one left running
    would keep committing to the session's catalog under the tests that follow.
    """
    started: list[subprocess.Popen] = []
    try:
        return _drive_all(rng, toml, address, tmp_path, started)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def _drive_all(rng: random.Random, toml, address, tmp_path, started: list[subprocess.Popen]) -> tuple[int, int]:
    pending, runs, kills = list(rng.sample(IDS, len(IDS))), 0, 0
    while pending:
        assert runs < MAX_DRIVER_RUNS, f"{runs} driver runs and still pending: {pending}"
        batch = pending[:rng.choice((1, 2))]
        pending = pending[len(batch):]
        procs = []
        for bid in batch:
            runs += 1
            log = tmp_path / f"driver-{runs}-{bid}.log"
            proc = driver_process(["backfill", "--config", str(toml), "--backfill-id", bid], address, log)
            started.append(proc)
            kill_after = rng.uniform(12, 45) if rng.random() < 0.5 and kills < 3 else None
            procs.append((bid, proc, log, kill_after, time.monotonic()))
            _say(tmp_path, f"run {runs}: {bid}" + (f", kill after {kill_after:.0f} s" if kill_after else ""))
        for bid, proc, log, kill_after, t0 in procs:
            if kill_after is not None:
                while proc.poll() is None and time.monotonic() - t0 < kill_after:
                    time.sleep(0.2)
                if proc.poll() is None:
                    proc.kill()
                    kills += 1
            code = _wait(proc, DRIVER_TIMEOUT)
            _say(tmp_path, f"{bid} exited {code}")
            if code != 0:
                assert code == -9, f"{bid} exited {code}:\n{log.read_text()[-3000:]}"
                pending.insert(rng.randrange(len(pending) + 1), bid)  # resumed later, in random order
    return runs, kills


def test_series_chaos_newest_staged_wins(ray_instance, catalog_service, tmp_path):
    import ray

    rng = random.Random(SEED)
    _say(tmp_path, f"seed {SEED}")
    cfg = make_config(catalog_service, "series_chaos", max_parallel=2, partitions_per_actor=1,
                      partitions_per_merge=2)
    catalog = pyiceberg_catalog(cfg)
    setup_tables(catalog, cfg, SampleSpec(accounts=6, months=MONTHS, first_month=FIRST, staged_accounts=0,
                                          backfill_id="unused", seed=SEED))
    before = read_target(catalog, cfg)
    _stage_series(catalog, cfg, rng, account_ids(6)[:4])
    staged = [r for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] in IDS]
    stop, reads = threading.Event(), []
    reader = threading.Thread(target=_reader, args=(cfg, before, staged, stop, reads), daemon=True)
    reader.start()
    try:
        runs, kills = _drive(rng, write_toml(cfg, tmp_path / "series.toml"), ray.get_runtime_context().gcs_address,
                             tmp_path)
        time.sleep(1.0)
    finally:
        stop.set()
        reader.join(60)
    rows = [r for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] in IDS]
    assert diff_tables(read_target(catalog, cfg), newest_wins(cfg, before, rows)) == []
    keys = Counter((r["backfill_id"], r["acct"], r["backfill_month"]) for r in rows)
    assert set(keys.values()) == {1} and len(keys) == len(staged)
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) <= {"applied", "superseded"}, statuses
    for bid in IDS:
        if any(r["backfill_id"] == bid and r["status"] == "applied" for r in rows):
            report = verify_backfill(cfg, catalog, [bid])
            assert report.ok, report.lines()
    partial = [dict(c) for c in reads if set(c) != {1}]
    _say(tmp_path, f"{runs} driver runs, {kills} killed; staging {dict(statuses)}; table equals the newest-wins "
                   f"model; verify ok; reader made {len(reads)} reads of main, {len(partial)} showed a cell "
                   "with more than one source")
    assert len(reads) > 20 and not partial
