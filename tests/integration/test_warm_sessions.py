"""Warm Spark sessions (``keep_warm_seconds``): the next run reuses the session a run left,
in the same process and, detached, from another driver process; idle ones end on their
own, those of other settings are ended to make room, and ``sessions`` lists and ends them.
Every run ends equal to the reference model."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from actors.named import WARM_PREFIX, end_idle, named
from actors.warm import list_sessions
from backfill import run_backfill
from backfill.config import RAY_NAMESPACE
from backfill.ops.setup import stage_rows
from tests.integration.helpers import diff_tables, make_config, pyiceberg_catalog, read_rows, read_target
from tests.integration.runner_env import ROOT, driver_process, expected_table, stage_wide_backfill, write_toml

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]

NS = RAY_NAMESPACE  # make_config keeps the default namespace


def _stage_more(catalog, cfg, backfill_id: str, before: dict, seed: int) -> list[dict]:
    """Entries of a second id on accounts and months of the table (some cells the first id wrote)."""
    rng = random.Random(seed)
    keys = rng.sample(sorted({(a, m) for a, m in before}), 6)
    rows = [{"backfill_id": backfill_id, "acct": a, "backfill_month": m,
             "balance": Decimal(rng.randint(1, 99_999)) / 100, "payment": None,
             "credit_limit": Decimal(rng.randint(1, 99_999)) / 100} for a, m in keys]
    stage_rows(catalog, cfg, rows)
    return [r for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == backfill_id]


def _check(catalog, cfg, before: dict, staged: list[dict]) -> dict:
    actual, expected = read_target(catalog, cfg), expected_table(cfg, before, staged)
    assert actual == expected, diff_tables(actual, expected)
    return actual


def _actors(result) -> set[str]:
    return {o.actor for o in result.outcomes if o.actor}


def _wait_gone(prefix: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not named(NS, prefix):
            return True
        time.sleep(1)
    return False


def _first_warm_run(catalog_service, namespace: str, backfill_id: str, months: int, seed: int):
    """No warm session left by earlier tests, then a run keeping its one session warm:
    (cfg, catalog, the table after it, the session's name)."""
    end_idle(NS)
    cfg = make_config(catalog_service, namespace, keep_warm_seconds=300, max_parallel=1, partitions_per_actor=1)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, backfill_id, months=months, seed=seed)
    first = run_backfill(cfg, [backfill_id])
    assert first.succeeded, first.summary_lines()
    [name] = _actors(first)
    return cfg, catalog, _check(catalog, cfg, before, staged), name


def test_the_next_run_in_the_process_reuses_the_warm_session(ray_instance, catalog_service):
    cfg, catalog, after, name = _first_warm_run(catalog_service, "warm1", "bf-warm-a", months=6, seed=41)
    assert name.startswith(WARM_PREFIX)
    [kept] = list_sessions(NS)
    assert (kept.name, kept.holder) == (name, None)

    more = _stage_more(catalog, cfg, "bf-warm-b", after, seed=42)
    lines: list[str] = []
    second = run_backfill(cfg, ["bf-warm-b"], progress=lines.append)
    assert second.succeeded, second.summary_lines()
    _check(catalog, cfg, after, more)
    assert _actors(second) == {name}, lines
    assert any("reusing 1 warm Spark session(s), no session to start" in line for line in lines), lines
    [again] = list_sessions(NS)
    assert again.pid == kept.pid  # the same process, so the same JVM and Spark session

    assert end_idle(NS) == [name]
    assert not named(NS, WARM_PREFIX)


def _other(cfg, shuffle: str, keep: float):
    """``cfg`` with other Spark settings (another session key) and keep-warm time."""
    spark = dataclasses.replace(cfg.spark, conf={"spark.sql.shuffle.partitions": shuffle})
    return dataclasses.replace(cfg, spark=spark, run=dataclasses.replace(cfg.run, keep_warm_seconds=keep))


def _settled_free_cpus(seconds: float = 60) -> float:
    """Free CPUs once Ray's resource view has stopped moving (it lags an actor's exit by a
    moment: sizing a blocker from a stale view leaves CPUs free that the test thinks taken)."""
    import ray

    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        now = ray.available_resources().get("CPU", 0.0)
        if now == last:
            return now
        last = now
        time.sleep(2)
    raise AssertionError(f"Ray's free CPUs did not settle in {seconds} s (last {last})")


def _wait_free_cpus(at_most: float) -> None:
    import ray

    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0.0) > at_most and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0.0) <= at_most, ray.available_resources()


def test_idle_sessions_end_on_their_own_and_make_room_only_when_cpus_are_short(ray_instance, catalog_service):
    import ray

    cfg, catalog, table, old = _first_warm_run(catalog_service, "warm2", "bf-warm-c", months=3, seed=43)

    # other Spark settings (another key) with CPUs to spare: the idle session stays warm
    more = _stage_more(catalog, cfg, "bf-warm-d", table, seed=44)
    second = run_backfill(_other(cfg, "3", keep=4), ["bf-warm-d"])
    assert second.succeeded, second.summary_lines()
    table = _check(catalog, cfg, table, more)
    [short_lived] = _actors(second)
    assert old in named(NS, WARM_PREFIX)
    # idle for its 4 s of keep-warm, that one stops its Spark session and ends
    assert _wait_gone(short_lived, 90), named(NS, WARM_PREFIX)

    # CPUs short (a blocker takes all but one): the idle session of other settings is ended
    free = _settled_free_cpus()
    blocker = ray.remote(num_cpus=free - 1)(_Blocker).remote()
    try:
        ray.get(blocker.ping.remote())
        _wait_free_cpus(1)
        more = _stage_more(catalog, cfg, "bf-warm-g", table, seed=47)
        third = run_backfill(_other(cfg, "2", keep=300), ["bf-warm-g"])
        assert third.succeeded, third.summary_lines()
        _check(catalog, cfg, table, more)
        assert old not in named(NS, WARM_PREFIX)
    finally:
        ray.kill(blocker)
        end_idle(NS)


class _Blocker:
    def ping(self) -> bool:
        return True


def _cli(args: list[str], address: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backfill", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "RAY_ADDRESS": address, "PYTHONPATH": str(ROOT)},
                          timeout=300)


def test_a_detached_session_outlives_its_driver_and_serves_the_next_one(ray_instance, catalog_service, tmp_path):
    import ray

    end_idle(NS)
    cfg = make_config(catalog_service, "warm3", max_parallel=1, partitions_per_actor=1)
    catalog = pyiceberg_catalog(cfg)
    before, staged = stage_wide_backfill(catalog, cfg, "bf-warm-e", months=4, seed=45)
    toml = str(write_toml(cfg, tmp_path / "warm.toml"))
    address = ray.get_runtime_context().gcs_address
    run = ["backfill", "--config", toml, "--keep-warm", "300", "--backfill-id"]

    first = driver_process([*run, "bf-warm-e"], address, tmp_path / "d1.log")
    assert first.wait(timeout=600) == 0, (tmp_path / "d1.log").read_text()[-3000:]
    after = _check(catalog, cfg, before, staged)
    listed = _cli(["sessions", "--config", toml], address)
    assert listed.returncode == 0 and "1 warm session(s)" in listed.stdout and "idle" in listed.stdout, listed

    more = _stage_more(catalog, cfg, "bf-warm-f", after, seed=46)
    second = driver_process([*run, "bf-warm-f"], address, tmp_path / "d2.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "d2.log").read_text()[-3000:]
    assert "reusing 1 warm Spark session(s)" in (tmp_path / "d2.log").read_text()
    _check(catalog, cfg, after, more)

    stopped = _cli(["sessions", "--config", toml, "--stop"], address)
    assert stopped.returncode == 0 and "ended 1 idle session(s)" in stopped.stdout, stopped
    assert not named(NS, WARM_PREFIX)


def test_a_driver_without_the_cluster_token_is_told_so(ray_instance, tmp_path):
    """A driver on a node without the cluster's auth token: exit 5 and what to do, no traceback."""
    import ray

    if os.environ.get("RAY_AUTH_MODE", "token") == "disabled":
        pytest.skip("this session's Ray runs without token authentication")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    env.update(HOME=str(tmp_path), RAY_ADDRESS=ray.get_runtime_context().gcs_address, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "backfill", "sessions"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 5, done
    assert "token" in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
