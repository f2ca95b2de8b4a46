"""The distributed runner on the real stack: concurrency cap, killed actors, a killed
driver, and committed work whose record was lost. Each ends with the table equal to the
reference model and no partition applied twice."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from actors.checkpoint import RayCheckpointStore, run_key
from backfill import run_backfill
from backfill.core.commit_tags import tagged_partitions
from backfill.core.states import CheckpointState
from backfill.iceberg.tables import identifier
from tests.integration.helpers import diff_tables, make_config, pyiceberg_catalog, read_rows, read_target
from tests.integration.runner_env import (
    commits_per_partition,
    driver_process,
    expected_table,
    stage_wide_backfill,
    table_uuid,
    wait_for,
    write_toml,
)

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]


def _max_overlap(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def test_twelve_partitions_three_actors_at_once(ray_instance, catalog_service):
    cfg = make_config(catalog_service, "par3", max_parallel=3, partitions_per_actor=1,
                      partitions_per_merge=1)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-par3", months=14)
    result = run_backfill(cfg, ["bf-par3"])
    assert result.succeeded, result.summary_lines()
    assert result.planned >= 12
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
    audit = [r for r in read_rows(catalog, cfg, "audit")
             if r["run_id"] == result.run_id and r["status"] == "committed"]
    assert len({r["actor"] for r in audit}) == 3
    # MERGE attempts of three different actors overlapped in time (audit timestamps)
    assert _max_overlap([(r["started_at"], r["completed_at"]) for r in audit]) == 3
    assert all(n == 1 for n in commits_per_partition(catalog, cfg, "bf-par3").values())


def test_two_partitions_at_once_in_one_actor_session(ray_instance, catalog_service):
    """partitions_per_actor 2: one Spark session runs two MERGEs at once from two threads;
    each commit still carries its own partition's tags (thread-local commit properties)."""
    cfg = make_config(catalog_service, "slots2", max_parallel=2, partitions_per_actor=2,
                      partitions_per_merge=1)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-slots", months=6, seed=29)
    result = run_backfill(cfg, ["bf-slots"])
    assert result.succeeded, [o.error[:1500] for o in result.outcomes if o.error][:2]
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
    audit = [r for r in read_rows(catalog, cfg, "audit")
             if r["run_id"] == result.run_id and r["status"] == "committed"]
    assert len({r["actor"] for r in audit}) == 1 and len(audit) == 6
    assert _max_overlap([(r["started_at"], r["completed_at"]) for r in audit]) == 2
    commits = commits_per_partition(catalog, cfg, "bf-slots")
    assert sorted(p for p, _ in commits) == sorted(r["target_partition"] for r in audit)
    assert all(n == 1 for n in commits.values())
    # each audit row's snapshot is the commit tagged with that row's partition
    table = catalog.load_table("slots2.accounts_history")
    tag = {s.snapshot_id: tagged_partitions(s.summary.additional_properties)
           for s in table.metadata.snapshots if s.summary}
    assert all(r["target_partition"] in tag[r["snapshot_id"]] for r in audit)


def test_partition_actor_killed_mid_merge_is_retried(ray_instance, catalog_service):
    import ray

    # sessions that end with the run (keep-warm off): the actors killed are this run's own
    cfg = make_config(catalog_service, "killactor", max_parallel=2, keep_warm_seconds=0)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-kill", months=6, seed=9)
    ckpt = RayCheckpointStore(cfg.checkpoint_location(), namespace=cfg.run.checkpoint_namespace)
    killed: list[str] = []

    def killer():
        # wait until an attempt is running, give it a moment to be inside its MERGE, then
        # kill the actor that runs it
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            records = ckpt.load(run_key(["bf-kill"], table_uuid(catalog, cfg), cfg.tables.target_table))
            running = [p for p, c in records.items() if c.state == CheckpointState.RUNNING]
            if running:
                time.sleep(3)
                for entry in ray.util.list_named_actors(all_namespaces=True):
                    if entry["name"].startswith("backfill-run-"):  # partition actors of a run
                        ray.kill(ray.get_actor(entry["name"], namespace=entry["namespace"]),
                                 no_restart=True)
                        killed.append(entry["name"])
                        break
            time.sleep(0.5)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = run_backfill(cfg, ["bf-kill"])
    thread.join(timeout=5)
    assert killed, "the test never killed an actor"
    assert result.succeeded, result.summary_lines()
    died = [o for o in result.outcomes if o.status == "failed"]
    assert died and all(o.transient for o in died)
    assert any("Actor" in (o.error or "") for o in died)
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
    assert all(n == 1 for n in commits_per_partition(catalog, cfg, "bf-kill").values())


def test_driver_killed_mid_run_then_resumed(ray_instance, catalog_service, tmp_path):
    import ray

    # two partitions per MERGE: the resume must recognise both partitions of a batch commit
    cfg = make_config(catalog_service, "killdriver", max_parallel=1, partitions_per_merge=2)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-driver", months=8, seed=13)
    toml = write_toml(cfg, tmp_path / "cfg.toml")
    address = ray.get_runtime_context().gcs_address
    proc = driver_process(["backfill", "--config", str(toml), "--backfill-id", "bf-driver"],
                          address, tmp_path / "driver1.log")
    committed_now = lambda: {r["target_partition"] for r in read_rows(catalog, cfg, "audit")  # noqa: E731
                             if r["backfill_id"] == "bf-driver" and r["status"] == "committed"}
    wait_for(proc, tmp_path / "driver1.log", lambda: len(committed_now()) >= 2)
    committed = committed_now()
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(timeout=30)
    assert 2 <= len(committed) < 8
    # the same command again, as a user would
    proc2 = driver_process(["backfill", "--config", str(toml), "--backfill-id", "bf-driver"],
                           address, tmp_path / "driver2.log")
    assert proc2.wait(timeout=1200) == 0, (tmp_path / "driver2.log").read_text()[-3000:]
    log = (tmp_path / "driver2.log").read_text()
    for partition in committed:
        assert f"{partition} already_committed" in log
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
    assert all(n == 1 for n in commits_per_partition(catalog, cfg, "bf-driver").values())
    assert {r["status"] for r in read_rows(catalog, cfg, "staging")
            if r["backfill_id"] == "bf-driver"} <= {"applied", "rejected"}


def test_stopped_before_it_starts_and_mid_run_then_resumed(ray_instance, catalog_service, tmp_path):
    """SIGTERM (`ray job stop`) right after planning, before Ray is connected, and again
    mid-run: both exit 7 and write no commit for a partition they did not finish; the same
    command then completes. A stop during start-up once killed the driver with exit 15,
    because ray.init replaced the run's SIGTERM handler."""
    import ray

    cfg = make_config(catalog_service, "stopsig", max_parallel=1, partitions_per_merge=1)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-stop", months=6, seed=17)
    toml = write_toml(cfg, tmp_path / "cfg.toml")
    address = ray.get_runtime_context().gcs_address
    args = ["backfill", "--config", str(toml), "--backfill-id", "bf-stop"]
    snapshots = lambda: len(catalog.load_table(identifier(cfg, "target")).metadata.snapshots)  # noqa: E731
    n_before = snapshots()

    log1 = tmp_path / "driver1.log"
    proc = driver_process(args, address, log1)
    wait_for(proc, log1, lambda: "plan: " in log1.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 7, log1.read_text()[-3000:]
    assert "not started" in log1.read_text()
    assert snapshots() == n_before

    log2 = tmp_path / "driver2.log"
    proc = driver_process(args, address, log2)
    committed = lambda: {r["target_partition"] for r in read_rows(catalog, cfg, "audit")  # noqa: E731
                         if r["backfill_id"] == "bf-stop" and r["status"] == "committed"}
    wait_for(proc, log2, lambda: len(committed()) >= 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=600) == 7, log2.read_text()[-3000:]
    done = committed()
    assert 1 <= len(done) < 6, done
    # applied only when every partition is done
    assert "applied" not in {r["status"] for r in read_rows(catalog, cfg, "staging")
                             if r["backfill_id"] == "bf-stop"}

    log3 = tmp_path / "driver3.log"
    proc = driver_process(args, address, log3)
    assert proc.wait(timeout=1200) == 0, log3.read_text()[-3000:]
    for partition in done:
        assert f"{partition} already_committed" in log3.read_text()
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
    assert all(n == 1 for n in commits_per_partition(catalog, cfg, "bf-stop").values())


def test_commit_whose_record_was_lost_is_not_redone(ray_instance, catalog_service):
    cfg = make_config(catalog_service, "lostrecord", max_parallel=2)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-lost", months=4, seed=17)
    first = run_backfill(cfg, ["bf-lost"])
    assert first.succeeded
    target_snapshot = catalog.load_table("lostrecord.accounts_history").current_snapshot().snapshot_id
    # lose every record of the run: checkpoint forgotten, staging rows pending again
    RayCheckpointStore(cfg.checkpoint_location(), namespace=cfg.run.checkpoint_namespace).forget(
        run_key(["bf-lost"], table_uuid(catalog, cfg), cfg.tables.target_table))
    from backfill.ops.setup import stage_rows

    stage_rows(catalog, cfg, [{k: v for k, v in r.items()
                               if k not in ("status", "processed_at", "error", "created_at")}
                              for r in staged])
    second = run_backfill(cfg, ["bf-lost"])
    assert second.succeeded
    assert {o.status for o in second.outcomes} <= {"already_committed", "noop"}
    assert any(o.status == "already_committed" for o in second.outcomes)
    assert catalog.load_table("lostrecord.accounts_history").current_snapshot().snapshot_id == target_snapshot
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)


def test_live_progress_shows_spark_tasks_while_a_merge_runs(ray_instance, catalog_service, monkeypatch):
    """A person watching sees each running MERGE's Spark tasks move, and no ETA before
    this run's MERGEs measured any work."""
    import actors.executor
    from backfill.ops.progress import LiveStatus

    monkeypatch.setattr(actors.executor, "LIVE_SECONDS", 0.2)
    cfg = make_config(catalog_service, "live", max_parallel=1, partitions_per_merge=4)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-live", months=14)

    class Capture:
        def __init__(self):
            self.lines: list[str] = []
            self.live_seen: list[LiveStatus] = []

        def line(self, text):
            self.lines.append(text)

        def live(self, status):
            self.live_seen.append(status)

    seen = Capture()
    from backfill import IcebergBackfillProcessor

    result = IcebergBackfillProcessor(cfg).run(["bf-live"], progress=seen)
    assert result.succeeded, result.summary_lines()
    assert read_target(catalog, cfg) == expected_table(cfg, before, staged)
    merges = [m for s in seen.live_seen for m in s.running]
    assert any(m.spark is not None and m.spark.tasks > 0 for m in merges), [m.text() for m in merges]
    assert all(s.eta_seconds is None for s in seen.live_seen if s.done == 0)
    assert seen.lines[0].startswith("starting a local Ray instance") or seen.lines[0] == "connecting to Ray"
    assert any(line.startswith("applying ") and "Spark session" in line for line in seen.lines)
    print("\n".join(seen.lines[:4] + [s.text() for s in seen.live_seen[::max(1, len(seen.live_seen) // 8)]]))
