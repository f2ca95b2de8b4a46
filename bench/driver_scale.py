"""Driver scaling: ``backfill --dry-run`` (validation and planning) of a large staged input.

    pip install -e ".[bench]"                       # sqlalchemy, for pyiceberg's SQL catalog
    python -m bench.driver_scale                    # 100,000 accounts x 12 months = 1.2M entries
    python -m bench.driver_scale --accounts 1000000 # 12M entries
    python -m bench.driver_scale --columns 2        # only 2 of the 20 value columns filled

What the user waits for is timed: the whole ``iceberg-backfill backfill --dry-run`` command
as its own process, with its peak resident memory (``VmHWM`` of that process, read as it
exits: ``ru_maxrss`` of a child would count the pages of this parent it was forked from). The tables
live in a pyiceberg SQL catalog (SQLite) on local disk, because validation and planning
run on the driver through pyiceberg only; no JVM is started. The target is the benchmark's
default size (20,000 accounts x 24 months) with the 20 seed history columns.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from backfill.config import load_config
from backfill.iceberg import tables
from backfill.iceberg.schema import staging_schema
from backfill.ops.sample_data import SampleSpec
from backfill.ops.setup import setup_tables
from cluster.catalog import load_pyiceberg_catalog, resolve_catalog

CONFIG = """
[tables]
target_table = "db.accounts_history"
staging_table = "db.backfill_staging"
audit_table = "db.backfill_audit"
[catalog]
name = "scale"
type = "sql"
warehouse = "file://{root}/warehouse"
properties = {{ uri = "sqlite:///{root}/catalog.db", warehouse = "file://{root}/warehouse" }}
"""


#: ``python -m backfill`` that reports its own peak resident memory on the way out.
_CHILD = """
import atexit, runpy, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("peak-rss-kb", line.split()[1], file=sys.stderr)
atexit.register(_peak)
sys.argv[0] = "backfill"
runpy.run_module("backfill", run_name="__main__", alter_sys=True)
"""


def _peak_mb(stderr: str) -> float:
    kb = [line.split()[1] for line in stderr.splitlines() if line.startswith("peak-rss-kb ")]
    return int(kb[-1]) / 1024 if kb else float("nan")


def _decimals(rng: np.random.Generator, n: int, type_: pa.DataType) -> pa.Array:
    """``n`` random positive values of two decimals (0.01 .. 999.99) as ``type_``, built from
    their 128-bit little-endian words: a Python Decimal per cell held 13 GB for 1.2M entries."""
    words = np.zeros((n, 2), dtype=np.int64)
    words[:, 0] = rng.integers(1, 100_000, size=n)
    exact = pa.Array.from_buffers(pa.decimal128(type_.precision, 2), n, [None, pa.py_buffer(words.tobytes())])
    return exact.cast(type_)


def _stage(cfg, catalog, accounts: int, months: list[str], filled: int) -> int:
    """Stage ``accounts`` x ``months`` entries in one append, ``filled`` value columns set."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    rng = np.random.default_rng(1)
    schema = schema_to_pyarrow(staging_schema(cfg), include_field_ids=False)
    n = accounts * len(months)
    accts = np.repeat(100_000 + np.arange(accounts, dtype=np.int64) * 7_919, len(months))
    cols: dict[str, pa.Array] = {
        "backfill_id": pa.repeat("big", n), "acct": pa.array(accts),
        "backfill_month": pa.array(np.tile(np.array(months), accounts)), "status": pa.repeat("pending", n),
        "created_at": pa.repeat(pa.scalar(datetime.now(timezone.utc), pa.timestamp("us", tz="UTC")), n)}
    values = [hc.value_column for hc in cfg.tables.history_columns]
    for f in schema:
        if f.name not in cols:
            cols[f.name] = _decimals(rng, n, f.type) if f.name in values[:filled] else pa.nulls(n, f.type)
    tables.load(catalog, cfg, "staging").append(pa.table([cols[f.name].cast(f.type) for f in schema], schema=schema))
    return n


def _prepare(root: Path, accounts: int, columns: int) -> int:
    """The catalog, target and staged entries under ``root``; the number of entries."""
    (root / "warehouse").mkdir()
    (root / "backfill.toml").write_text(CONFIG.format(root=root))
    cfg = load_config(root / "backfill.toml")
    catalog = load_pyiceberg_catalog(resolve_catalog(cfg.catalog))
    catalog.create_namespace("db")
    print("writing the default-size target (20,000 accounts x 24 months) ...", flush=True)
    setup_tables(catalog, cfg, SampleSpec(accounts=20_000, months=24, first_month="2022-01",
                                          staged_accounts=0, backfill_id="unused"))
    return _stage(cfg, catalog, accounts, [f"2023-{m:02d}" for m in range(1, 13)], columns)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=100_000, help="staged accounts (x 12 months)")
    p.add_argument("--columns", type=int, default=20, help="value columns filled per staged row")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    p.add_argument("--prepare-in", type=Path, help=argparse.SUPPRESS)  # the data-writing child
    args = p.parse_args(argv)
    if args.prepare_in:
        print(f"staged {_prepare(args.prepare_in, args.accounts, args.columns):,} entries", flush=True)
        return 0
    n = args.accounts * 12
    with tempfile.TemporaryDirectory(prefix="driver-scale-") as tmp:
        root = Path(tmp)
        # written by a process of its own, which exits first: the generator's gigabytes of
        # sample rows must not sit beside the dry run being measured
        subprocess.run([sys.executable, "-m", "bench.driver_scale", "--prepare-in", str(root),
                        "--accounts", str(args.accounts), "--columns", str(args.columns)], check=True)
        print(f"timing the dry run of {n:,} entries ({args.columns} value columns filled) ...", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", _CHILD, "backfill", "--config", str(root / "backfill.toml"),
                               "--backfill-id", "big", "--dry-run"], capture_output=True, text=True)
        wall = time.monotonic() - t0
        peak_mb = _peak_mb(proc.stderr)
    result = {"entries": n, "filled_columns": args.columns, "exit_code": proc.returncode,
              "wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_mb)}
    print(json.dumps(result))
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
