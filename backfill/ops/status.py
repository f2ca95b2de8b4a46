"""``status``: where a backfill stands, read from the audit table only.

The driver appends one audit row per partition attempt as soon as the attempt ends (and
'planned' rows when a run starts), so reading that table is enough to show progress
while a run is still going on, from any machine, without Ray or Spark. The functions
over rows are pure so the same logic serves the CLI, ``report`` and tests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from backfill.core.states import DONE_STATUSES, AttemptStatus, PartitionProgress, StagingStatus
from backfill.errors import TableError
from backfill.iceberg import tables
from backfill.iceberg.filters import equal

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression

    from backfill.config import Config


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: Done statuses in the order ``status`` lists them.
_DONE_ORDER = tuple(s.value for s in AttemptStatus if s in DONE_STATUSES)


# ------------------------------------------------------------------------ loading


def load_audit_rows(catalog: Catalog, cfg: Config, backfill_id: str,
                    run_id: str | None = None) -> list[dict[str, Any]]:
    """Audit rows of ``backfill_id`` (optionally one run) from the current audit snapshot.

    The filter is pushed into the pyiceberg scan so only matching data files are read;
    a missing audit table raises TableError (exit 4) with the usual setup hint.
    """
    from pyiceberg.expressions import And

    table = tables.load(catalog, cfg, "audit")
    if table.current_snapshot() is None:
        return []
    flt: BooleanExpression = equal("backfill_id", backfill_id)
    if run_id is not None:
        flt = And(flt, equal("run_id", run_id))
    rows: list[dict[str, Any]] = table.scan(row_filter=flt).to_arrow().to_pylist()
    return rows


def load_entry_counts(catalog: Catalog, cfg: Config, backfill_id: str) -> dict[str, int]:
    """How many staging rows of ``backfill_id`` are in each status, and for the superseded
    ones, by whom (keys ``superseded by B``): what became of the id's entries."""
    try:
        table = tables.load(catalog, cfg, "staging")
    except TableError:  # status reads the audit table only; without staging it shows no entries line
        return {}
    if table.current_snapshot() is None:
        return {}
    rows = table.scan(row_filter=equal("backfill_id", backfill_id),
                      selected_fields=("status", "error")).to_arrow().to_pylist()
    return entry_counts(rows)


# ------------------------------------------------------------------------ pure logic


def entry_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """{status: rows} in the order of :class:`StagingStatus`, plus ``superseded by ...``."""
    out = {s.value: 0 for s in StagingStatus}
    for r in rows:
        out[str(r["status"])] = out.get(str(r["status"]), 0) + 1
        if r["status"] == StagingStatus.SUPERSEDED and r.get("error"):
            out[str(r["error"])] = out.get(str(r["error"]), 0) + 1
    return out


def entries_line(counts: dict[str, int], backfill_id: str | None = None) -> str:
    """``staging entries of A: applied 3, superseded 1 (superseded by B: 1), ...``."""
    plain = [s.value for s in StagingStatus]
    by = [f"{k}: {v}" for k, v in sorted(counts.items()) if k not in plain]
    main = ", ".join(f"{s.replace('_', ' ')} {counts.get(s, 0)}" for s in plain if counts.get(s, 0))
    return (f"staging entries of {backfill_id or '?'}: {main or 'none'}"
            + (f" ({'; '.join(by)})" if by else ""))


def as_utc(ts: datetime | None) -> datetime | None:
    """Timestamps from Iceberg are UTC-aware; hand-made ones may be naive (taken as UTC)."""
    if ts is None:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def attempt_order(row: dict[str, Any]) -> tuple[datetime, int, int]:
    """Sort key placing a partition's rows in the order they happened.

    'planned' rows and an 'already_committed' row of the same run share one timestamp
    and attempt 0, so a planned row sorts first on ties: the later fact wins.
    """
    ts = as_utc(row.get("completed_at")) or as_utc(row.get("started_at")) or _EPOCH
    return ts, int(row.get("attempt") or 0), 0 if row.get("status") == AttemptStatus.PLANNED else 1


def unique_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with duplicates dropped: a run over several backfill ids writes each attempt once
    per id, so rows of more than one id must not count an attempt twice."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for r in rows:
        key = (r.get("run_id"), r.get("target_partition"), r.get("attempt"), r.get("status"),
               as_utc(r.get("started_at")))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def category(state: str) -> PartitionProgress:
    """Done, failed or pending, for a partition state (an attempt status or 'pending')."""
    if state in DONE_STATUSES:
        return PartitionProgress.DONE
    return PartitionProgress.FAILED if state == AttemptStatus.FAILED else PartitionProgress.PENDING


@dataclass(frozen=True)
class PartitionState:
    """Where one target partition stands: its latest audit row wins.

    ``state`` is the last attempt's status, or 'pending' when the latest row is a
    'planned' row (a run planned it and has not finished an attempt yet). A failed
    attempt followed by a committed one is therefore done. ``attempts`` counts real
    attempts (planned rows excluded) over the runs in scope; ``rows_updated`` and
    ``snapshot_id`` come from the latest committing attempt, so a partition that a
    later run found already committed still shows what its commit changed.
    """

    partition: str
    state: str
    attempts: int
    rows_updated: int
    duration_seconds: float | None
    error: str | None
    snapshot_id: int | None
    run_id: str | None

    @property
    def category(self) -> PartitionProgress:
        return category(self.state)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def partition_states(rows: Iterable[dict[str, Any]]) -> list[PartitionState]:
    """One PartitionState per target partition, sorted by partition (newest month first)."""
    by_part: dict[str, list[dict[str, Any]]] = {}
    for r in unique_rows(rows):
        by_part.setdefault(str(r.get("target_partition")), []).append(r)
    states = []
    for part, prs in by_part.items():
        prs.sort(key=attempt_order)
        last = prs[-1]
        real = [r for r in prs if r.get("status") != AttemptStatus.PLANNED]
        commits = [r for r in real if r.get("status") == AttemptStatus.COMMITTED]
        pending = last.get("status") == AttemptStatus.PLANNED
        state = PartitionProgress.PENDING.value if pending else str(last.get("status"))
        done = category(state) == PartitionProgress.DONE
        source = commits[-1] if commits and done else last
        states.append(PartitionState(
            partition=part,
            state=state,
            attempts=len(real),
            rows_updated=int(source.get("rows_updated") or 0) if done else 0,
            duration_seconds=None if pending else _float(last.get("duration_seconds")),
            error=last.get("error") if state == AttemptStatus.FAILED else None,
            snapshot_id=source.get("snapshot_id") if done else None,
            run_id=last.get("run_id"),
        ))
    return sorted(states, key=lambda s: s.partition, reverse=True)


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def totals(states: Sequence[PartitionState]) -> dict[str, int]:
    """Counts shown under the table and in JSON."""
    out = {"total": len(states), "done": 0, "failed": 0, "pending": 0, "rows_updated": 0}
    for s in states:
        out[s.category.value] += 1
        out["rows_updated"] += s.rows_updated
    for st in _DONE_ORDER:
        out[st] = sum(1 for s in states if s.state == st)
    return out


def format_status(states: Sequence[PartitionState], backfill_id: str | None = None,
                  run_id: str | None = None, error_width: int = 60) -> str:
    """Fixed-width table, one line per partition, then the totals line."""
    head = f"backfill {backfill_id or '?'}" + (f"  run {run_id}" if run_id else "  (all runs)")
    cols = ("partition", "state", "attempts", "rows", "seconds", "snapshot", "run", "error")
    body = [(s.partition, s.state, str(s.attempts), str(s.rows_updated),
             "" if s.duration_seconds is None else f"{s.duration_seconds:.1f}",
             "" if s.snapshot_id is None else str(s.snapshot_id), s.run_id or "",
             _one_line(s.error, error_width)) for s in states]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(cols)]
    right = {2, 3, 4}

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    t = totals(states)
    done_detail = ", ".join(f"{st.replace('_', ' ')} {t[st]}" for st in _DONE_ORDER if t[st])
    lines = [head, fmt(cols)] + [fmt(r) for r in body]
    lines.append(f"{t['done']}/{t['total']} done" + (f" ({done_detail})" if done_detail else "")
                 + f", {t['failed']} failed, {t['pending']} pending;"
                 + f" rows updated {t['rows_updated']}")
    return "\n".join(lines)


def _one_line(text: str | None, width: int) -> str:
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 3] + "..."


def status_dict(states: Sequence[PartitionState], backfill_id: str | None = None,
                run_id: str | None = None, entries: dict[str, int] | None = None) -> dict[str, Any]:
    """JSON-ready form: ids, totals, staging entry counts and one object per partition."""
    return {"backfill_id": backfill_id, "run_id": run_id, "totals": totals(states),
            "entries": entries or {}, "partitions": [dataclasses.asdict(s) for s in states]}


def format_status_json(states: Sequence[PartitionState], backfill_id: str | None = None,
                       run_id: str | None = None, entries: dict[str, int] | None = None) -> str:
    return json.dumps(status_dict(states, backfill_id, run_id, entries), indent=2, sort_keys=True)


def states_from_json(text: str) -> list[PartitionState]:
    """Inverse of :func:`format_status_json` for the partition list (scripts, tests)."""
    return [PartitionState.from_dict(p) for p in json.loads(text)["partitions"]]
