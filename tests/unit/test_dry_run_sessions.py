"""--dry-run says what a run would start on Ray: MERGEs, sessions and their size, keep-warm."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from types import SimpleNamespace

from backfill.cli.run import _sessions_line
from backfill.config import Config, RunConfig, SparkConfig
from backfill.core.entries import Entry
from backfill.core.plan import plan_run


def _prepared(cfg: Config) -> SimpleNamespace:
    entries = [Entry("2024-01", a, "bf", (Decimal("1.00"),)) for a in (1, 2)]
    partitions = [f"2024-{m:02d}" for m in range(1, 13)]
    return SimpleNamespace(cfg=cfg, plan=plan_run(entries, partitions, 36))


def test_the_sessions_a_run_would_start_are_named():
    cfg = dataclasses.replace(Config(), spark=SparkConfig(engine="raydp", num_executors=2, executor_cores=3,
                                                          executor_memory="4g"),
                              run=RunConfig(max_parallel=4, partitions_per_actor=2, partitions_per_merge=3))
    line = _sessions_line(_prepared(cfg))
    assert line == ("would run 4 MERGE(s), up to 4 at once, in up to 2 RayDP Spark session(s) of 2 executor(s) x "
                    "3 core(s) x 4g (8 Ray CPUs each), ended with the run")


def test_keep_warm_is_said():
    cfg = dataclasses.replace(Config(), run=RunConfig(keep_warm_seconds=600))
    assert _sessions_line(_prepared(cfg)).endswith("kept warm 600 s after the run")


def test_unset_cores_are_this_machines_share_and_the_dry_run_says_so(monkeypatch, ray_at):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    ray_at(None)  # no Ray yet: the run would start its own
    cfg = dataclasses.replace(Config(), run=RunConfig(max_parallel=4, partitions_per_actor=2, partitions_per_merge=3))
    line = _sessions_line(_prepared(cfg))
    # a run alone on this machine: "auto" is a local session (no RayDP JVMs beside the actor's)
    assert line == ("would run 4 MERGE(s), up to 4 at once, in up to 2 local Spark session(s) of 1 executor(s) x "
                    "3 core(s) x 3072m (sized from this machine's 8 core(s) over 2 session(s): 3 core(s) per executor; "
                    "5 Ray CPUs each), ended with the run")


def test_on_a_cluster_the_dry_run_says_cores_are_decided_at_the_start(monkeypatch):
    cfg = dataclasses.replace(Config(), run=RunConfig(ray_address="10.0.0.1:6379"))
    line = _sessions_line(_prepared(cfg))
    assert ("cores and memory from the cluster's free CPUs when the run starts ([spark] executor_cores and "
            "executor_memory fix them)") in line
    assert " RayDP Spark session(s) " in line  # "auto" on a cluster the run joins
