"""The real path end to end on production-shaped stacks: SeaweedFS's Iceberg REST catalog
with tables on S3, and Iceberg's JDBC catalog on PostgreSQL (``tests/stacks.py``).

Every step is the CLI as its own process, as a user runs it: ``setup``, a ``backfill``
with two MERGEs at once in two Spark sessions, killed (SIGKILL) after its first commits
and resumed by the same command, ``status``, ``verify``, ``compact``; the table is
compared cell by cell with the reference model before and after compaction. The driver
runs in a folder of its own (its working folder, home and temp), so it shares nothing
with the actors but the catalog and the storage: on S3 the checkpoint must be on the
object store, and no node's disk may hold one. No secret of the stack may appear in any
output, audit row, error or Ray log.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from actors.checkpoint import FileCheckpointStore
from backfill.core.names import CHECKPOINT_DIRNAME
from backfill.iceberg.tables import identifier
from tests.integration.helpers import (
    diff_tables,
    pyiceberg_catalog,
    read_rows,
    read_target,
    stack_config,
    with_run,
)
from tests.integration.runner_env import ROOT, driver_process, expected_table, wait_for, write_toml

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.slow]

BID = "bf-stack"
STACKS = ["seaweed_stack", "postgres_stack"]


def _cli(args: list[str], address: str, log: Path, node: Path, timeout: float = 900) -> str:
    t0 = time.monotonic()
    proc = driver_process(args, address, log, node)
    code = proc.wait(timeout=timeout)
    out = log.read_text()
    assert code == 0, f"{' '.join(args[:1])} exited {code}:\n{out[-3000:]}"
    _show(args, code, time.monotonic() - t0, out)
    return out


def _show(args: list[str], code: int, seconds: float, out: str) -> None:
    """What ``pytest -s`` prints of each command: its exit code, time and last line."""
    last = next((line for line in reversed(out.splitlines()) if line.strip()), "")
    print(f"  $ iceberg-backfill {args[0]} ...  -> exit {code} in {seconds:.1f} s: {last.strip()[:150]}")


def _committed(catalog, cfg) -> set[str]:
    return {r["target_partition"] for r in read_rows(catalog, cfg, "audit")
            if r["backfill_id"] == BID and r["status"] == "committed"}


def _checkpoint_store(catalog, cfg) -> FileCheckpointStore:
    """The store the run writes, read the way the checkpoint actor does (location, the table's IO)."""
    target = catalog.load_table(identifier(cfg, "target"))
    return FileCheckpointStore(cfg.checkpoint_location(target.metadata.location), dict(target.io.properties))


def _ray_logs(ray_instance) -> str:
    from ray._private.worker import _global_node

    logs = Path(_global_node.get_session_dir_path()) / "logs"
    return "\n".join(p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())


def _local_checkpoint_folders(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists()
            for p in [*root.rglob(CHECKPOINT_DIRNAME), *root.rglob(".iceberg-backfill")]]


@pytest.mark.parametrize("stack_fixture", STACKS)
def test_stack_end_to_end(request, ray_instance, stack_fixture, tmp_path):
    stack = request.getfixturevalue(stack_fixture)
    address = ray_instance.get_runtime_context().gcs_address
    node = tmp_path / "driver-node"
    node.mkdir()
    # two MERGEs at once, one per session (two sessions), two partitions per MERGE
    cfg = stack_config(stack, f"e2e_{stack_fixture.removesuffix('_stack')}", max_parallel=2,
                       partitions_per_actor=1, partitions_per_merge=2, checkpoint_dir=None)
    toml = write_toml(cfg, node / "backfill.toml")
    outputs = [_cli(["setup", "--config", str(toml), "--sample-data", "--accounts", "24", "--months", "12",
                     "--first-month", "2023-01", "--staged-accounts", "12", "--backfill-id", BID, "--seed", "5"],
                    address, node / "setup.log", node)]
    catalog = pyiceberg_catalog(cfg)
    before = read_target(catalog, cfg)
    staged = [r for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == BID]
    expected = expected_table(cfg, before, staged)
    assert expected != before

    run = ["backfill", "--config", str(toml), "--backfill-id", BID]
    if stack_fixture == "seaweed_stack":
        # the table bucket takes only table files: the default checkpoint place is refused at once
        outputs.append(_refused(run, address, node, catalog, cfg))
        cfg = with_run(cfg, checkpoint_dir=stack.ledger_location)
        toml = write_toml(cfg, node / "backfill.toml")

    # killed after its first commits: the checkpoint is on the store by then
    t0 = time.monotonic()
    proc = driver_process(run, address, node / "driver1.log", node)
    wait_for(proc, node / "driver1.log", lambda: len(_committed(catalog, cfg)) >= 2)
    store = _checkpoint_store(catalog, cfg)
    keys = [k for k in store.keys() if k.startswith(f"{BID}@")]
    proc.kill()
    proc.wait(timeout=30)
    committed = _committed(catalog, cfg)
    print(f"  $ iceberg-backfill backfill ...  -> SIGKILL after {time.monotonic() - t0:.1f} s, "
          f"{len(committed)} partition(s) committed; checkpoint in {store.location}")
    assert keys and 2 <= len(committed) < 12, (keys, committed)
    if stack_fixture == "seaweed_stack":
        assert store.location.startswith("s3://"), store.location
    outputs.append((node / "driver1.log").read_text())

    outputs.append(_cli(run, address, node / "driver2.log", node))
    for partition in committed:
        assert f"{partition} already_committed" in outputs[-1], outputs[-1][-3000:]
    actual = read_target(catalog, cfg)
    assert actual == expected, diff_tables(actual, expected)

    status = _cli(["status", "--config", str(toml), "--backfill-id", BID, "--json"], address,
                  node / "status.log", node)
    outputs.append(status)
    assert json.loads(status[status.index("{"):])  # a JSON document, after any log lines
    verify = _cli(["verify", "--config", str(toml), "--backfill-id", BID], address, node / "verify.log", node)
    outputs.append(verify)
    assert ": OK" in verify, verify[-2000:]
    # on S3 every partition the backfill touched (what costs there); on PostgreSQL two (the
    # catalog path is the same, and the suite has a time budget)
    scope = (["--backfill-id", BID] if stack_fixture == "seaweed_stack"
             else ["--partition", sorted(committed)[0], "--partition", sorted(expected_partitions(expected))[-1]])
    outputs.append(_cli(["compact", "--config", str(toml), *scope], address, node / "compact.log", node))
    actual = read_target(catalog, cfg)
    assert actual == expected, diff_tables(actual, expected)

    if stack_fixture == "seaweed_stack":  # nothing of the run on any node's disk
        assert _local_checkpoint_folders(node, ROOT, Path.home()) == []
    audit = json.dumps(read_rows(catalog, cfg, "audit"), default=str)
    everything = "\n".join([*outputs, audit, _ray_logs(ray_instance)])
    leaked = [name for name, secret in _named(stack.secrets()) if secret in everything]
    assert leaked == [], f"secrets in the output, audit rows or Ray logs: {leaked}"


@pytest.mark.parametrize("stack_fixture", STACKS)
def test_wrong_credentials_are_named_without_the_secret(request, ray_instance, stack_fixture, tmp_path):
    stack = request.getfixturevalue(stack_fixture)
    cfg = stack_config(stack, f"badcred_{stack_fixture.removesuffix('_stack')}")
    wrong = "Wr0ng-S3cret-" + stack_fixture
    cfg = dataclasses.replace(cfg, catalog=_with_wrong_secret(cfg.catalog, stack.secrets(), wrong))
    toml = write_toml(cfg, tmp_path / "bad.toml")
    proc = driver_process(["status", "--config", str(toml), "--backfill-id", BID],
                          ray_instance.get_runtime_context().gcs_address, tmp_path / "bad.log", tmp_path)
    code = proc.wait(timeout=300)
    out = (tmp_path / "bad.log").read_text()
    _show(["status"], code, 0.0, out)
    assert code not in (0, 1), out[-3000:]      # a classified error, not a crash
    assert "Traceback" not in out, out[-3000:]
    assert wrong not in out and not any(s in out for s in stack.secrets()), out[-3000:]


def expected_partitions(table: dict) -> set[str]:
    return {partition for _, partition in table}


def _refused(run: list[str], address: str, node: Path, catalog, cfg) -> str:
    """The run on the table bucket's default checkpoint folder: exit 2, the folder named, nothing written."""
    target = catalog.load_table(identifier(cfg, "target"))
    before = (target.metadata.current_snapshot_id, set(target.metadata.refs))
    t0 = time.monotonic()
    proc = driver_process(run, address, node / "refused.log", node)
    code = proc.wait(timeout=600)
    out = (node / "refused.log").read_text()
    _show(run, code, time.monotonic() - t0, out)
    assert code == 2, out[-3000:]
    assert "cannot write the checkpoint folder s3://warehouse/.backfill-checkpoints" in out, out[-3000:]
    assert "checkpoint_dir" in out and "Traceback" not in out, out[-3000:]
    target = catalog.load_table(identifier(cfg, "target"))
    assert (target.metadata.current_snapshot_id, set(target.metadata.refs)) == before
    assert {r["status"] for r in read_rows(catalog, cfg, "staging") if r["backfill_id"] == BID} == {"pending"}
    assert [r for r in read_rows(catalog, cfg, "audit") if r["backfill_id"] == BID] == []
    return out


def _named(secrets: set[str]) -> list[tuple[str, str]]:
    """Secrets with a printable name (never the value) for the failure message."""
    return [(f"secret #{i} ({len(s)} chars)", s) for i, s in enumerate(sorted(secrets))]


def _with_wrong_secret(catalog, secrets: set[str], wrong: str):
    def swap(props):
        out = {}
        for k, v in props.items():
            for s in secrets:
                v = v.replace(s, wrong) if s else v
            out[k] = v
        return out

    return dataclasses.replace(catalog, properties=swap(catalog.properties),
                               spark_properties=swap(catalog.spark_properties),
                               pyiceberg_properties=swap(catalog.pyiceberg_properties))
