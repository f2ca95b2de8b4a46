"""status and report through the CLI against a live audit table on the embedded catalog.

Needs the embedded metastore JVM only (no Spark session): rows are appended with the
driver's own AuditWriter, exactly as a run streams them, then read back by the commands.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from backfill import cli
from backfill.core.results import CommitStats, PartitionOutcome
from backfill.errors import ExitCode
from backfill.iceberg.audit import AuditWriter
from backfill.iceberg.tables import create_audit
from tests.integration.helpers import make_config, pyiceberg_catalog

pytestmark = [pytest.mark.spark]

NS = "statusrep"
BID, OTHER = "bf-live", "bf-live-b"
T0 = datetime(2024, 3, 1, 8, 0, 0, tzinfo=timezone.utc)


def _outcome(part, status, attempt, start, end, **kw):
    return PartitionOutcome(partition=part, status=status, attempt=attempt, entries=4,
                            started_at=T0 + timedelta(seconds=start),
                            completed_at=T0 + timedelta(seconds=end), **kw)


@pytest.fixture(scope="module")
def live(catalog_service, tmp_path_factory):
    cfg = make_config(catalog_service, NS)
    catalog = pyiceberg_catalog(cfg)
    table, _ = create_audit(catalog, cfg)
    writer = AuditWriter(table)
    ids = (BID, OTHER)  # one run over two backfill ids: every attempt is written once per id
    parts = ("2024-02", "2024-01", "2023-12", "2023-11")
    planned = [_outcome(p, "planned", 0, 0, 0) for p in parts]
    writer.append([o.audit_row(b, "run-1") for o in planned for b in ids])
    attempts = [
        _outcome("2023-12", "already_committed", 0, 0, 0, snapshot_id=42),
        _outcome("2024-02", "failed", 1, 1, 4, actor="backfill-run-1-a0",
                 error="TransientError: commit conflict", transient=True),
        _outcome("2024-01", "committed", 1, 1, 9, rows_updated=30, snapshot_id=7001,
                 actor="backfill-run-1-a1", stats=CommitStats(bytes_written=2048, bytes_read=4096)),
        _outcome("2024-02", "committed", 2, 5, 11, rows_updated=12, snapshot_id=7002,
                 actor="backfill-run-1-a0", stats=CommitStats(bytes_written=1024)),
    ]
    for o in attempts:  # appended one by one, as the driver does while the run goes on
        writer.append([o.audit_row(b, "run-1") for b in ids])
    cfg_file = tmp_path_factory.mktemp("statusrep") / "backfill.toml"
    cfg_file.write_text(
        f'[tables]\naudit_table = "{NS}.backfill_audit"\n'
        f'target_table = "{NS}.accounts_history"\nstaging_table = "{NS}.backfill_staging"\n'
        f'[catalog]\ntype = "embedded"\nwarehouse = "{catalog_service.warehouse_dir}"\n')
    return cfg, catalog, ["--config", str(cfg_file), "--log-level", "WARNING"]


@pytest.fixture
def commands():
    """The read-only commands are registered by the CLI's observe group; a marker of CLI tests."""
    assert {"status", "report"} <= set(cli.build_parser()._subparsers._group_actions[0].choices)


def test_status_text(live, commands, capsys):
    _, _, common = live
    assert cli.main(["status", "--backfill-id", BID, *common]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines()[2:-1]}
    assert lines["2024-02"][:4] == ["2024-02", "committed", "2", "12"]
    assert lines["2024-01"][:4] == ["2024-01", "committed", "1", "30"]
    assert lines["2023-12"][:2] == ["2023-12", "already_committed"]
    assert lines["2023-11"][:3] == ["2023-11", "pending", "0"]
    assert out.splitlines()[-1] == ("3/4 done (committed 2, already committed 1), 0 failed, "
                                    "1 pending; rows updated 42")


def test_status_json_and_run_filter(live, commands, capsys):
    _, _, common = live
    assert cli.main(["status", "--backfill-id", OTHER, "--run-id", "run-1", "--json", *common]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backfill_id"] == OTHER and data["run_id"] == "run-1"
    assert data["totals"] == {"total": 4, "done": 3, "failed": 0, "pending": 1, "rows_updated": 42,
                              "committed": 2, "already_committed": 1, "noop": 0, "rolled_back": 0}
    parts = {p["partition"]: p for p in data["partitions"]}
    assert parts["2024-02"]["attempts"] == 2 and parts["2024-02"]["snapshot_id"] == 7002
    assert parts["2024-02"]["duration_seconds"] == 6.0


@pytest.mark.parametrize("argv", [["status", "--backfill-id", "no-such-id"],
                                  ["report", "--backfill-id", BID, "--run-id", "no-such-run"]])
def test_unknown_ids_exit_8(live, commands, capsys, argv):
    _, _, common = live
    assert cli.main([*argv, *common]) == ExitCode.NOTHING_RECORDED
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: no audit rows for backfill id")
    assert len(captured.err.strip().splitlines()) == 1


def test_report_formats_and_timeline(live, commands, capsys, tmp_path):
    _, _, common = live
    assert cli.main(["report", "--backfill-id", BID, *common]) == 0
    text = capsys.readouterr().out
    assert "3/4 done, 0 failed, 1 pending" in text and "4 (1 retries)" in text
    assert "wall time      11.0 s" in text and "3.0 KiB" in text

    md = tmp_path / "report.md"
    png = tmp_path / "timeline.png"
    assert cli.main(["report", "--backfill-id", BID, "--format", "markdown", "--output", str(md),
                     "--timeline", str(png), *common]) == 0
    assert "report written to" in capsys.readouterr().out
    assert md.read_text().startswith(f"# Backfill report: {BID}")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

    assert cli.main(["report", "--backfill-id", BID, "--format", "json", *common]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["rows_updated"] == 42 and rep["bytes_written"] == 3072 and rep["retries"] == 1
    assert rep["attempts"] == 4 and rep["run_ids"] == ["run-1"]
    slowest = rep["slowest"][0]
    assert slowest["partition"] == "2024-01" and slowest["duration_seconds"] == 8.0
