"""The detached checkpoint actor on a real Ray instance: it outlives a SIGKILLed driver,
and a new actor (new cluster) reloads what the old one wrote to disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from actors.checkpoint import RayCheckpointStore, key_filename
from backfill.core.states import CheckpointState

pytestmark = [pytest.mark.ray]

NS = "iceberg_backfill_ckpt_tests"  # not the fixture's job namespace: the explicit one must win
KEY = "bf-1,bf-2"
ROOT = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent("""
    import json, sys, time
    import ray
    from actors.checkpoint import RayCheckpointStore

    address, directory, namespace = sys.argv[1:4]
    ray.init(address=address, namespace="some-other-job", log_to_driver=False)
    s = RayCheckpointStore(directory, namespace=namespace)
    s.begin("bf-1,bf-2", "run-killed", [("2024-03", "d3"), ("2024-02", "d2"), ("2024-01", "d1")])
    s.mark("bf-1,bf-2", "2024-03", "running")
    s.mark("bf-1,bf-2", "2024-03", "committed", snapshot_id=1111)
    s.mark("bf-1,bf-2", "2024-02", "running")
    print(json.dumps(s.info()), flush=True)
    time.sleep(600)  # killed here, in the middle of partition 2024-02
""")


@pytest.fixture
def stores(ray_instance):
    """Tracks clients made by a test and kills their detached actors afterwards."""
    made: list[RayCheckpointStore] = []

    def make(directory: Path) -> RayCheckpointStore:
        s = RayCheckpointStore(directory, namespace=NS, timeout=120)
        made.append(s)
        return s

    yield make
    for s in made:
        try:
            s.kill()
        except Exception:
            pass


def _wait_gone(name: str, timeout: float = 60) -> None:
    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NS)
        except ValueError:
            return
        time.sleep(0.2)
    raise AssertionError(f"actor {name} still registered after {timeout} s")


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not out or not out[0]:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"subprocess driver printed nothing in {timeout} s; stderr:\n{err[-4000:]}")
    return out[0]


def test_state_survives_sigkilled_driver(ray_instance, stores, tmp_path):
    import ray

    address = ray.get_runtime_context().gcs_address
    directory = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(directory), NS],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_ADDRESS": address})
    try:
        info = json.loads(_read_line(proc, timeout=240))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    s = stores(directory)                     # a new driver finds the same live actor
    after = s.info()
    assert (after["pid"], after["started_at"]) == (info["pid"], info["started_at"])
    state = s.load(KEY)
    assert s.committed(KEY) == {"2024-03": ("d3", 1111)}
    assert (state["2024-02"].state, state["2024-02"].attempts) == (CheckpointState.RUNNING, 1)
    assert state["2024-01"].state == CheckpointState.PENDING
    assert (directory / key_filename(KEY)).exists()  # and it was written through

    # the resuming run: committed work stays, the partition the dead driver ran is pending
    resumed = s.begin(KEY, "run-resume", [("2024-03", "d3"), ("2024-02", "d2"), ("2024-01", "d1")])
    assert resumed["2024-03"].state == CheckpointState.COMMITTED and resumed["2024-03"].run_id == "run-killed"
    assert resumed["2024-02"].state == CheckpointState.PENDING and resumed["2024-02"].run_id == "run-resume"


def test_state_restored_from_files_after_actor_is_gone(ray_instance, stores, tmp_path):
    directory = tmp_path / "ckpt"
    s = stores(directory)
    s.begin(KEY, "run-1", [("2024-03", "d3"), ("2024-02", "d2")])
    s.mark(KEY, "2024-03", CheckpointState.RUNNING)
    s.mark(KEY, "2024-03", CheckpointState.COMMITTED, snapshot_id=2222)
    s.mark(KEY, "2024-02", CheckpointState.RUNNING)
    s.mark(KEY, "2024-02", "failed", error="TimeoutError: commit")
    old = s.info()
    s.kill()                                  # what a cluster teardown does to it
    _wait_gone(s.name)

    t = stores(directory)                     # new cluster, same warehouse
    new = t.info()
    assert new["pid"] != old["pid"] or new["started_at"] != old["started_at"]
    assert new["keys"] == [KEY]
    assert t.committed(KEY) == {"2024-03": ("d3", 2222)}
    failed = t.load(KEY)["2024-02"]
    assert (failed.state, failed.error, failed.attempts) == ("failed", "TimeoutError: commit", 1)


def test_restarted_actor_reloads_from_files(ray_instance, stores, tmp_path):
    import ray

    s = stores(tmp_path / "ckpt")
    s.begin(KEY, "run-1", [("2024-03", "d3")])
    s.mark(KEY, "2024-03", CheckpointState.COMMITTED, snapshot_id=3333)
    old = s.info()
    ray.kill(s.actor, no_restart=False)       # max_restarts reruns the constructor
    # ray.kill is asynchronous: a call may still reach the old process, so wait for the
    # restarted one (a new start time) rather than for the first answer
    deadline = time.monotonic() + 300
    new = old
    while new["started_at"] == old["started_at"]:
        assert time.monotonic() < deadline, "the checkpoint actor never restarted"
        try:
            new = s.info()
        except ray.exceptions.RayActorError:
            pass
        time.sleep(0.5)
    assert s.committed(KEY) == {"2024-03": ("d3", 3333)}


def test_errors_cross_the_actor_boundary(ray_instance, stores, tmp_path):
    s = stores(tmp_path / "ckpt")
    with pytest.raises(KeyError):
        s.mark(KEY, "2024-01", CheckpointState.RUNNING)
    s.begin(KEY, "r", [("2024-01", "d")])
    with pytest.raises(ValueError):
        s.mark(KEY, "2024-01", "bogus")
    s.forget(KEY)
    assert s.load(KEY) == {}


def test_name_clash_with_another_directory_is_refused(ray_instance, stores, tmp_path):
    first = stores(tmp_path / "a")
    with pytest.raises(ValueError, match="serves"):
        RayCheckpointStore(tmp_path / "b", namespace=NS, name=first.name, timeout=60)
