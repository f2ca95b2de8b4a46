"""``report``: what a backfill cost and how it ran, from the audit table only.

Status answers "what is left"; the report answers "how long, how much, where was the
time spent" so users can size ``--max-parallel`` and spot slow or flaky partitions. The
timeline PNG shows actor concurrency at a glance (gaps = idle slots, red = retries).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backfill.core.states import AttemptStatus
from backfill.ops.status import as_utc, partition_states, totals, unique_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FORMATS = ("text", "markdown", "json")
SLOWEST = 5
#: Bar colours of the timeline, by attempt status (keyed by str so a status read back
#: from the audit table finds its colour too).
STATUS_COLORS: dict[str, str] = {AttemptStatus.COMMITTED: "#2e7d32", AttemptStatus.ALREADY_COMMITTED: "#78909c",
                 AttemptStatus.NOOP: "#bdbdbd", AttemptStatus.FAILED: "#c62828",
                 AttemptStatus.INTERRUPTED: "#ef6c00"}
DRIVER_LANE = "driver"


@dataclass(frozen=True)
class SlowPartition:
    """The longest attempt of one partition."""

    partition: str
    status: str
    attempt: int
    duration_seconds: float
    rows_updated: int
    actor: str | None


@dataclass(frozen=True)
class Report:
    """Totals of a backfill; every field is JSON-native so ``asdict`` serialises it."""

    backfill_id: str | None
    run_ids: list[str]
    partitions: int
    done: int
    failed: int
    pending: int
    rows_updated: int
    bytes_written: int
    bytes_read: int
    attempts: int
    retries: int
    started_at: str | None
    completed_at: str | None
    wall_seconds: float
    rows_per_second: float | None
    partitions_per_minute: float | None
    slowest: list[SlowPartition] = field(default_factory=list)
    failed_partitions: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        data = dict(data)
        data["slowest"] = [SlowPartition(**s) for s in data.get("slowest", [])]
        return cls(**data)


def _only_backfill_id(rows: Sequence[dict[str, Any]]) -> str | None:
    """The backfill id the rows share; None when they mix several, so no title claims one."""
    ids = {r.get("backfill_id") for r in rows}
    return ids.pop() if len(ids) == 1 else None


def attempt_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Real attempts (no 'planned' rows, no duplicates across backfill ids)."""
    return [r for r in unique_rows(rows) if r.get("status") != AttemptStatus.PLANNED]


def _run_spans(rows: Sequence[dict[str, Any]]) -> list[tuple[datetime, datetime]]:
    """[first start, last end] of each run, merged where runs overlap.

    Summing these instead of taking first-start-to-last-end of everything keeps the idle
    time between two runs (e.g. a crash, then a resume next day) out of the throughput.
    """
    spans: dict[Any, list[datetime]] = {}
    for r in rows:
        s, e = as_utc(r.get("started_at")), as_utc(r.get("completed_at"))
        s = s or e
        e = e or s
        if s is None or e is None:
            continue
        cur = spans.setdefault(r.get("run_id"), [s, e])
        cur[0], cur[1] = min(cur[0], s), max(cur[1], e)
    merged: list[list[datetime]] = []
    for s, e in sorted(spans.values()):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def build_report(rows: Sequence[dict[str, Any]], backfill_id: str | None = None) -> Report:
    """Aggregate audit rows of one backfill id (any number of runs) into a Report."""
    rows = unique_rows(rows)
    if backfill_id is None:
        backfill_id = _only_backfill_id(rows)
    states = partition_states(rows)
    t = totals(states)
    attempts = attempt_rows(rows)
    committed = [r for r in attempts if r.get("status") == AttemptStatus.COMMITTED]
    per_run_part: dict[tuple[Any, Any], int] = {}
    for r in attempts:
        key = (r.get("run_id"), r.get("target_partition"))
        per_run_part[key] = per_run_part.get(key, 0) + 1
    spans = _run_spans(rows)
    wall = sum((e - s).total_seconds() for s, e in spans)
    longest: dict[str, SlowPartition] = {}
    for r in attempts:
        d = float(r.get("duration_seconds") or 0.0)
        p = str(r.get("target_partition"))
        if p not in longest or d > longest[p].duration_seconds:
            longest[p] = SlowPartition(p, str(r.get("status")), int(r.get("attempt") or 0), d,
                                       int(r.get("rows_updated") or 0), r.get("actor"))
    slowest = sorted(longest.values(), key=lambda s: (-s.duration_seconds, s.partition))[:SLOWEST]
    return Report(
        backfill_id=backfill_id,
        run_ids=sorted({str(r.get("run_id")) for r in rows if r.get("run_id") is not None}),
        partitions=t["total"], done=t["done"], failed=t["failed"], pending=t["pending"],
        rows_updated=t["rows_updated"],
        bytes_written=sum(int(r.get("bytes_written") or 0) for r in committed),
        bytes_read=sum(int(r.get("bytes_read") or 0) for r in committed),
        attempts=len(attempts),
        retries=sum(n - 1 for n in per_run_part.values()),
        started_at=spans[0][0].isoformat() if spans else None,
        completed_at=spans[-1][1].isoformat() if spans else None,
        wall_seconds=wall,
        rows_per_second=t["rows_updated"] / wall if wall > 0 else None,
        partitions_per_minute=t["done"] * 60.0 / wall if wall > 0 else None,
        slowest=slowest,
        failed_partitions=[s.partition for s in states if s.state == AttemptStatus.FAILED],
    )


# ------------------------------------------------------------------------ rendering


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _rate(v: float | None, unit: str) -> str:
    return "n/a" if v is None else f"{v:.2f} {unit}"


def _facts(r: Report) -> list[tuple[str, str]]:
    return [
        ("backfill id", r.backfill_id or "?"),
        ("runs", ", ".join(r.run_ids) or "-"),
        ("partitions", f"{r.done}/{r.partitions} done, {r.failed} failed, {r.pending} pending"),
        ("rows updated", str(r.rows_updated)),
        ("bytes written", _bytes(r.bytes_written)),
        ("bytes read", _bytes(r.bytes_read)),
        ("attempts", f"{r.attempts} ({r.retries} retries)"),
        ("wall time", f"{r.wall_seconds:.1f} s ({r.started_at or '?'} .. {r.completed_at or '?'})"),
        ("throughput", f"{_rate(r.rows_per_second, 'rows/s')}, "
                       f"{_rate(r.partitions_per_minute, 'partitions/min')}"),
    ] + ([("failed", ", ".join(r.failed_partitions))] if r.failed_partitions else [])


def render(report: Report, fmt: str = "text") -> str:
    """The report as 'text', 'markdown' or 'json'."""
    if fmt == "json":
        return json.dumps(dataclasses.asdict(report), indent=2, sort_keys=True)
    facts = _facts(report)
    slow = [(s.partition, s.status, str(s.attempt), f"{s.duration_seconds:.1f}",
             str(s.rows_updated), s.actor or DRIVER_LANE) for s in report.slowest]
    slow_head = ("partition", "status", "attempt", "seconds", "rows", "actor")
    if fmt == "markdown":
        lines = [f"# Backfill report: {report.backfill_id or '?'}", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in facts]
        if slow:
            lines += ["", f"## Slowest {len(slow)} partitions", "",
                      "| " + " | ".join(slow_head) + " |", "|" + "---|" * len(slow_head)]
            lines += ["| " + " | ".join(row) + " |" for row in slow]
        return "\n".join(lines)
    if fmt != "text":
        raise ValueError(f"unknown report format {fmt!r}; choose one of {FORMATS}")
    w = max(len(k) for k, _ in facts)
    lines = [f"{k.ljust(w)}  {v}" for k, v in facts]
    if slow:
        widths = [max(len(h), *(len(row[i]) for row in slow)) for i, h in enumerate(slow_head)]
        lines += ["", f"slowest {len(slow)} partitions:"]
        lines += ["  " + "  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip()
                  for row in [slow_head, *slow]]
    return "\n".join(lines)


# ------------------------------------------------------------------------ timeline


def timeline_png(rows: Sequence[dict[str, Any]], path: str | Path,
                 backfill_id: str | None = None) -> Path:
    """Write a Gantt-style PNG: one lane per actor, one bar per attempt, coloured by status.

    Attempts recorded by the driver itself (already committed partitions) have no actor
    and go to a 'driver' lane. Zero-length attempts get a minimum width to stay visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attempts = [r for r in attempt_rows(rows)
                if as_utc(r.get("started_at")) or as_utc(r.get("completed_at"))]
    clock = _Clock(min((t for r in rows if (t := as_utc(r.get("started_at"))) is not None), default=None))
    names = _lanes(attempts, clock)
    span = max([clock(r.get("completed_at")) for r in attempts] + [1.0])
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.6 * max(1, len(names))), dpi=110)
    narrow = _draw_bars(ax, attempts, names, clock, span)
    _draw_narrow_labels(ax, narrow, span)
    _draw_frame(ax, attempts, names, span)
    shown_id = backfill_id if backfill_id is not None else _only_backfill_id(rows)
    ax.set_title(f"backfill {shown_id or '?'}: {len(attempts)} attempts on {len(names)} lane(s)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    plt.close(fig)
    return out


@dataclass(frozen=True)
class _Clock:
    """Seconds since the first start of the run; bars are placed on this one axis.

    A missing time (or a run with no start at all) reads as 0 so a half-written audit
    row still gets drawn instead of failing the whole picture.
    """

    t0: datetime | None

    def __call__(self, ts: datetime | None) -> float:
        v = as_utc(ts)
        return (v - self.t0).total_seconds() if v is not None and self.t0 is not None else 0.0

    def extent(self, row: dict[str, Any]) -> tuple[float, float]:
        """(start, end) of an attempt; one recorded end alone stands for both."""
        return (self(row.get("started_at") or row.get("completed_at")),
                self(row.get("completed_at") or row.get("started_at")))


def _lane(row: dict[str, Any]) -> str:
    return row.get("actor") or DRIVER_LANE


def _lanes(attempts: Sequence[dict[str, Any]], clock: _Clock) -> list[str]:
    """Lane names, top to bottom in the order the lanes first got work."""
    ordered = sorted(attempts, key=lambda r: clock(r.get("started_at") or r.get("completed_at")))
    return list(dict.fromkeys(_lane(r) for r in ordered))


def _draw_bars(ax: Axes, attempts: Sequence[dict[str, Any]], names: list[str], clock: _Clock,
               span: float) -> dict[tuple[int, int], list[str]]:
    """One bar per attempt, labelled inside when the label fits.

    Returns the labels that did not fit, by (lane, slot of 2% of the span), so that a
    burst of short attempts gets one summary label instead of unreadable overlapping text.
    """
    min_w = span * 0.004
    narrow: dict[tuple[int, int], list[str]] = {}
    for r in attempts:
        s, e = clock.extent(r)
        y = names.index(_lane(r))
        status = str(r.get("status"))
        ax.barh(y, max(e - s, min_w), left=s, height=0.6,
                color=STATUS_COLORS.get(status, "#6a1b9a"), edgecolor="black", linewidth=0.5)
        attempt = int(r.get("attempt") or 0)
        label = str(r.get("target_partition")) + (f" #{attempt}" if attempt > 1 else "")
        if e - s >= span * 0.009 * (len(label) + 2):
            ax.text((s + e) / 2, y, label, ha="center", va="center", fontsize=7,
                    color="black" if status == AttemptStatus.NOOP else "white")
        else:
            narrow.setdefault((y, round(s / (span * 0.02))), []).append(label)
    return narrow


def _draw_narrow_labels(ax: Axes, narrow: dict[tuple[int, int], list[str]], span: float) -> None:
    """Labels of bars too short to hold text, above their lane: one, or the range of several."""
    for (y, slot), labels in narrow.items():
        text = labels[0] if len(labels) == 1 else f"{min(labels)}..{max(labels)} ({len(labels)})"
        ax.text(slot * span * 0.02, y - 0.34, text, ha="left", va="bottom", fontsize=6)


def _draw_frame(ax: Axes, attempts: Sequence[dict[str, Any]], names: list[str], span: float) -> None:
    """Lane names, time axis, and a legend of only the statuses that occur."""
    from matplotlib.patches import Patch

    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([_short(n) for n in names], fontsize=8)
    ax.set_ylim(len(names) - 0.4, -0.8)
    ax.set_xlim(0, span * 1.08)
    ax.set_xlabel("seconds since run start")
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    present = [s for s in STATUS_COLORS if any(r.get("status") == s for r in attempts)]
    ax.legend(handles=[Patch(color=STATUS_COLORS[s], label=s.replace("_", " ")) for s in present],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _short(actor: str, width: int = 28) -> str:
    return actor if len(actor) <= width else "..." + actor[-(width - 3):]
