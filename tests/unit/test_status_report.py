"""status/report logic on hand-made audit rows (no catalog, no JVM)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from backfill import cli
from backfill.cli import observe, options
from backfill.errors import ExitCode
from backfill.ops import status
from backfill.ops.report import Report, build_report, render, timeline_png
from backfill.ops.status import entry_counts, format_status, format_status_json, partition_states, states_from_json

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
BID = "bf-1"


def row(part, st, attempt, start, end, run="r1", rows=0, actor=None, error=None, snap=None,
        bytes_written=None, bid=BID):
    """One audit row shaped like PartitionOutcome.audit_row; times in seconds after T0."""
    s, e = T0 + timedelta(seconds=start), T0 + timedelta(seconds=end)
    return {"backfill_id": bid, "run_id": run, "target_partition": part, "status": st,
            "attempt": attempt, "entries": 3, "rows_updated": rows, "missing_rows": 0,
            "duration_seconds": float(end - start), "started_at": s, "completed_at": e,
            "error": error, "snapshot_id": snap, "actor": actor, "node": "n1",
            "data_files_read": None, "data_files_written": None, "bytes_read": None,
            "bytes_written": bytes_written, "records_written": None, "delete_files_written": None}


PARTS = ("2023-12", "2023-11", "2023-10", "2023-09", "2023-08", "2023-07")


def run1():
    rows = [row(p, "planned", 0, 0, 0) for p in PARTS]
    rows += [
        row("2023-10", "already_committed", 0, 0, 0, snap=99),
        row("2023-12", "failed", 1, 0, 5, actor="a0",
            error="TransientError: commit conflict\nstack"),
        row("2023-11", "committed", 1, 0, 12, rows=50, actor="a1", snap=112, bytes_written=500),
        row("2023-12", "committed", 2, 6, 20, rows=100, actor="a0", snap=111, bytes_written=1000),
        row("2023-09", "failed", 1, 13, 15, actor="a1", error="PermanentError: bad sql"),
        row("2023-09", "failed", 2, 16, 18, actor="a1", error="PermanentError: bad sql again"),
        row("2023-07", "noop", 1, 21, 22, actor="a0"),
    ]
    return rows  # 2023-08: planned only


def by_part(states):
    return {s.partition: s for s in states}


def test_partition_states_last_attempt_wins():
    st = by_part(partition_states(run1()))
    assert list(st) == sorted(PARTS, reverse=True)
    assert st["2023-12"].state == "committed" and st["2023-12"].attempts == 2
    assert st["2023-12"].rows_updated == 100 and st["2023-12"].snapshot_id == 111
    assert st["2023-12"].error is None and st["2023-12"].duration_seconds == 14.0
    assert st["2023-09"].state == "failed" and st["2023-09"].attempts == 2
    assert st["2023-09"].error == "PermanentError: bad sql again"
    assert st["2023-08"].state == "pending" and st["2023-08"].attempts == 0
    assert st["2023-08"].duration_seconds is None
    # planned and already_committed share timestamp and attempt 0: the real status wins
    assert st["2023-10"].state == "already_committed" and st["2023-10"].snapshot_id == 99
    assert st["2023-07"].state == "noop" and st["2023-07"].category == "done"


def test_totals_and_text_table():
    states = partition_states(run1())
    t = status.totals(states)
    got = (t["total"], t["done"], t["failed"], t["pending"], t["rows_updated"])
    assert got == (6, 4, 1, 1, 150)
    text = format_status(states, BID)
    assert text.splitlines()[0] == "backfill bf-1  (all runs)"
    assert ("4/6 done (committed 2, already committed 1, noop 1), 1 failed, 1 pending; "
            "rows updated 150") in text
    assert "PermanentError: bad sql again" in text
    assert "stack" not in text  # only the first line of an error


def test_rerun_plans_failed_partition_again_then_finds_committed_ones():
    rows = run1() + [
        row(p, "planned", 0, 100, 100, run="r2") for p in ("2023-12", "2023-09")
    ] + [row("2023-12", "already_committed", 0, 100, 100, run="r2", snap=111)]
    st = by_part(partition_states(rows))
    assert st["2023-09"].state == "pending" and st["2023-09"].run_id == "r2"
    # the commit's rows and snapshot survive a later 'already_committed'
    assert st["2023-12"].state == "already_committed" and st["2023-12"].rows_updated == 100
    assert st["2023-12"].attempts == 3
    only_r2 = by_part(partition_states([r for r in rows if r["run_id"] == "r2"]))
    assert set(only_r2) == {"2023-12", "2023-09"} and only_r2["2023-12"].rows_updated == 0


def test_rows_of_several_backfill_ids_do_not_double_count():
    rows = run1()
    twice = rows + [{**r, "backfill_id": "bf-2"} for r in rows]
    assert partition_states(twice) == partition_states(rows)
    assert build_report(twice).attempts == build_report(rows).attempts


def test_status_json_round_trip():
    states = partition_states(run1())
    text = format_status_json(states, BID, None)
    data = json.loads(text)
    assert data["backfill_id"] == BID and data["totals"]["pending"] == 1
    assert states_from_json(text) == states


def test_naive_timestamps_are_utc():
    rows = [row("2023-12", "failed", 1, 0, 5), row("2023-12", "committed", 2, 6, 9, rows=1)]
    rows[1]["completed_at"] = rows[1]["completed_at"].replace(tzinfo=None)
    rows[1]["started_at"] = rows[1]["started_at"].replace(tzinfo=None)
    assert partition_states(rows)[0].state == "committed"


def test_build_report_counts_retries_and_throughput():
    rep = build_report(run1())
    assert rep.backfill_id == BID and rep.run_ids == ["r1"]
    assert (rep.partitions, rep.done, rep.failed, rep.pending) == (6, 4, 1, 1)
    assert rep.attempts == 7 and rep.retries == 2
    assert rep.rows_updated == 150 and rep.bytes_written == 1500 and rep.bytes_read == 0
    assert rep.wall_seconds == 22.0
    assert rep.rows_per_second == pytest.approx(150 / 22)
    assert rep.partitions_per_minute == pytest.approx(4 * 60 / 22)
    assert [(s.partition, s.duration_seconds) for s in rep.slowest[:3]] == [
        ("2023-12", 14.0), ("2023-11", 12.0), ("2023-09", 2.0)]
    assert len(rep.slowest) == 5 and rep.failed_partitions == ["2023-09"]


def test_wall_time_leaves_out_the_gap_between_runs():
    rows = run1() + [row("2023-09", "planned", 0, 1000, 1000, run="r2"),
                     row("2023-09", "committed", 1, 1000, 1008, run="r2", rows=7, actor="b0")]
    rep = build_report(rows)
    assert rep.wall_seconds == 22.0 + 8.0
    assert rep.retries == 2 and rep.done == 5 and rep.rows_updated == 157


def test_empty_report_has_no_rates():
    rep = build_report([row("2023-12", "planned", 0, 0, 0)])
    assert rep.pending == 1 and rep.rows_per_second is None and rep.wall_seconds == 0.0
    assert "n/a" in render(rep, "text")


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_render_formats(fmt):
    rep = build_report(run1())
    out = render(rep, fmt)
    if fmt == "json":
        assert Report.from_dict(json.loads(out)) == rep
    else:
        assert "4/6 done, 1 failed, 1 pending" in out and "7 (2 retries)" in out
        assert "2023-12" in out
    if fmt == "markdown":
        assert out.startswith("# Backfill report: bf-1") and "| partition |" in out


def test_render_rejects_unknown_format():
    with pytest.raises(ValueError):
        render(build_report(run1()), "html")


def test_timeline_png(tmp_path):
    path = timeline_png(run1(), tmp_path / "timeline.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from PIL import Image  # matplotlib depends on pillow

    with Image.open(path) as img:
        assert img.width > 500 and img.height > 200


# ------------------------------------------------------------------------ CLI wiring


@pytest.fixture
def commands():
    """The read-only commands are registered by the CLI's observe group; a marker of CLI tests."""
    assert {"status", "report"} <= set(cli.build_parser()._subparsers._group_actions[0].choices)


def test_help_lists_options(commands, capsys):
    for cmd, opts in (("status", ["--backfill-id", "--run-id", "--json"]),
                      ("report", ["--format", "--output", "--timeline"])):
        with pytest.raises(SystemExit) as exc:
            cli.main([cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert all(o in out for o in opts)


def test_commands_exit_8_without_rows(commands, monkeypatch, capsys):
    monkeypatch.setattr(observe, "load_audit_rows", lambda *args: [])
    monkeypatch.setattr(options, "catalog_from_config", lambda cfg: (None, None))
    assert cli.main(["status", "--backfill-id", "nope"]) == ExitCode.NOTHING_RECORDED
    err = capsys.readouterr().err.strip()
    assert err == "error: no audit rows for backfill id 'nope'"
    assert cli.main(["report", "--backfill-id", "nope", "--run-id", "r9"]) == ExitCode.NOTHING_RECORDED
    assert "and run id 'r9'" in capsys.readouterr().err


def test_commands_print_from_rows(commands, monkeypatch, capsys, tmp_path):
    entries = entry_counts([{"status": "applied"}, {"status": "superseded", "error": "superseded by B"}])
    monkeypatch.setattr(observe, "rows_for_args", lambda args: (run1(), entries))
    assert cli.main(["status", "--backfill-id", BID, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["totals"]["done"] == 4 and shown["entries"]["superseded by B"] == 1
    assert cli.main(["status", "--backfill-id", BID]) == 0
    assert (f"staging entries of {BID}: applied 1, superseded 1 (superseded by B: 1)"
            in capsys.readouterr().out)
    out_file, png = tmp_path / "r.md", tmp_path / "t.png"
    assert cli.main(["report", "--backfill-id", BID, "--format", "markdown",
                     "--output", str(out_file), "--timeline", str(png)]) == 0
    assert out_file.read_text().startswith("# Backfill report") and png.stat().st_size > 0
