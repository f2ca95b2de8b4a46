"""Building blocks for the runner's real-stack tests: a staged multi-partition backfill,
a TOML config for subprocess drivers, and commit counting from snapshot summaries."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from backfill.config import Config, config_toml
from backfill.core.commit_tags import tagged_ids, tagged_work
from backfill.core.months import add_months
from backfill.iceberg.tables import identifier
from backfill.ops.sample_data import SampleSpec
from backfill.ops.setup import setup_tables
from tests.integration.helpers import model_entries, read_rows, read_target

ROOT = Path(__file__).resolve().parents[2]


def stage_wide_backfill(catalog: Any, cfg: Config, backfill_id: str, months: int = 14,
                        accounts: int = 24, seed: int = 5) -> tuple[dict, list[dict]]:
    """Tables with ``months`` partitions and staged entries touching all of them."""
    spec = SampleSpec(accounts=accounts, months=months, first_month="2023-01",
                      staged_accounts=accounts // 2, backfill_id=backfill_id, seed=seed)
    setup_tables(catalog, cfg, spec)
    return read_target(catalog, cfg), [r for r in read_rows(catalog, cfg, "staging")
                                       if r["backfill_id"] == backfill_id]


def commits_per_partition(catalog: Any, cfg: Config, backfill_id: str) -> Counter:
    """How many target snapshots each (partition, digest) of ``backfill_id`` has."""
    table = catalog.load_table(identifier(cfg, "target"))
    counts: Counter = Counter()
    for snap in table.metadata.snapshots:
        props = snap.summary.additional_properties if snap.summary else {}
        if backfill_id in tagged_ids(props):
            counts.update(tagged_work(props).items())
    return counts


def table_uuid(catalog: Any, cfg: Config) -> Any:
    """The target's Iceberg table UUID: part of the checkpoint key of its runs."""
    return catalog.load_table(identifier(cfg, "target")).metadata.table_uuid


def write_toml(cfg: Config, path: Path, keep_warm: bool = False) -> Path:
    """The test config as a TOML file, for drivers started as subprocesses. Their sessions
    end with the run unless ``keep_warm`` (a killed driver's actors die with it, as before
    keep-warm existed; the warm-session tests ask for it)."""
    if not keep_warm:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, keep_warm_seconds=0.0))
    path.write_text(config_toml(cfg))
    return path


def driver_process(args: list[str], ray_address: str, log: Path, node: Path | None = None) -> subprocess.Popen:
    """``python -m backfill ...`` as a separate driver process attached to the test's Ray.

    ``node``: the driver's own working folder and home (a node that shares nothing with
    the actors' but the catalog and the storage); default: the repository, as before.
    """
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PYTHONPATH": str(ROOT)}
    if node is not None:  # its own home: the cluster's token travels as a node's would
        token = Path.home() / ".ray" / "auth_token"
        env.update(HOME=str(node), TMPDIR=str(node), **({"RAY_AUTH_TOKEN_PATH": str(token)} if token.exists() else {}))
    return subprocess.Popen([sys.executable, "-m", "backfill", *args], cwd=node or ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for(proc: subprocess.Popen, log: Path, what: Any, timeout: float = 900) -> None:
    """Until ``what()`` holds; the driver must still be running then (else its log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not what():
        time.sleep(0.2)
    assert proc.poll() is None and what(), log.read_text()[-3000:]


def expected_table(cfg: Config, before: dict, staged: list[dict]) -> dict:
    from bench.reference_model import apply_rule

    return apply_rule(before, model_entries(cfg, staged), cfg.tables.window)


__all__ = ["Decimal", "add_months", "commits_per_partition", "driver_process", "expected_table",
           "stage_wide_backfill", "table_uuid", "wait_for", "write_toml"]
