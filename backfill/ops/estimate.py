"""``estimate``: how much a backfill will read and how long it may take, without Spark.

Why from metadata only: starting a Spark session costs 15-40 s and a user asks for an
estimate before committing cluster time. The plan comes from
:func:`backfill.ops.run.prepare` (the same validation and planning the run uses), and the
cost of each planned partition from Iceberg scan planning through pyiceberg: the data
files of the partition, and among them the *candidate* files whose account min/max
bounds hold at least one affected account. With copy-on-write and runtime file
filtering (DESIGN.md section 6) only files that really hold an affected row are rewritten,
so candidate bytes are an upper bound of what each MERGE reads and rewrites. A file is a
candidate when some affected account hashes to its ``bucket(acct)`` partition value and
lies within its account min/max bounds.

Duration comes from a throughput model ``seconds = a + b * candidate_bytes`` per
partition, least-squares fitted to committed partitions of past runs (audit table).
With fewer than :data:`MIN_SAMPLES` usable past rows it falls back to stated default
constants, and the output always says which basis was used.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from backfill.core.states import AttemptStatus, StagingStatus
from backfill.errors import ConfigError
from backfill.iceberg import tables
from backfill.iceberg.filters import equal

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.manifest import DataFile
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.table import Table

    from backfill.config import Config
    from backfill.prepared import PreparedRun

#: Fewest past partitions the model is fitted to; below this the defaults are used.
MIN_SAMPLES = 3
#: Default fixed cost of one partition MERGE (planning, commit, staging read), seconds.
DEFAULT_SECONDS_PER_PARTITION = 20.0
#: Default rewrite throughput of one partition actor, bytes per second (20 MiB/s).
DEFAULT_BYTES_PER_SECOND = 20 * 1024 * 1024
#: Start-up of one RayDP Spark session (paid once per actor, actors start in parallel).
SESSION_START_SECONDS = 20.0


# ---------------------------------------------------------------------- file bounds


@dataclass(frozen=True)
class FileBounds:
    """One data file: size, rows, decoded account bounds and account bucket (None when unknown).

    ``bucket`` is the file's value of the ``bucket(num_buckets, acct)`` partition field:
    with a bucketed spec every account of the file hashes to it, which prunes far more
    than min/max bounds (hashing spreads each bucket over the whole account range).
    """

    size_bytes: int
    record_count: int
    acct_lower: int | None
    acct_upper: int | None
    bucket: int | None = None
    num_buckets: int | None = None


#: bucket function (num_buckets, account) -> bucket, e.g. Iceberg's murmur3 bucket transform.
BucketFn = Callable[[int, int], int]


def iceberg_bucket(num_buckets: int, acct: int) -> int:
    """Iceberg's bucket transform of a long account (the same hash Spark writes with)."""
    from pyiceberg.transforms import BucketTransform
    from pyiceberg.types import LongType

    bucket = BucketTransform(num_buckets).transform(LongType())(acct)
    if bucket is None:  # the transform maps only a missing value to no bucket
        raise TypeError(f"account {acct!r} has no bucket: accounts are whole numbers")
    return bucket


def may_hold_any(bounds: FileBounds, sorted_accounts: Sequence[int],
                 bucket_of: BucketFn | None = None) -> bool:
    """True when some account of ``sorted_accounts`` may be in the file.

    That account must lie within the file's [lower, upper] and, when the file has a
    bucket and ``bucket_of`` is given, hash to the file's bucket. Missing bounds or
    bucket (stats not written, or an unbucketed spec) never exclude a file, so the
    estimate never undercounts.
    """
    accts: Sequence[int] = sorted_accounts
    if bucket_of is not None and bounds.bucket is not None and bounds.num_buckets:
        accts = [a for a in sorted_accounts if bucket_of(bounds.num_buckets, a) == bounds.bucket]
    if not accts:
        return False
    if bounds.acct_lower is None or bounds.acct_upper is None:
        return True
    i = bisect.bisect_left(accts, bounds.acct_lower)
    return i < len(accts) and accts[i] <= bounds.acct_upper


def count_candidates(files: Iterable[FileBounds], accounts: Iterable[int],
                     bucket_of: BucketFn | None = iceberg_bucket) -> tuple[int, int]:
    """(files, bytes) among ``files`` that may hold one of ``accounts``."""
    accts = sorted(set(accounts))
    memo: dict[tuple[int, int], int] = {}

    def cached(n: int, a: int) -> int:
        if (n, a) not in memo:
            memo[(n, a)] = bucket_of(n, a)  # type: ignore[misc]
        return memo[(n, a)]

    n = size = 0
    for f in files:
        if may_hold_any(f, accts, cached if bucket_of is not None else None):
            n += 1
            size += f.size_bytes
    return n, size


def decode_bounds(data_file: DataFile, field_id: int, field_type: Any,
                  bucket_pos: int | None = None, num_buckets: int | None = None) -> FileBounds:
    """FileBounds of a pyiceberg DataFile: account bounds decoded, bucket read from its partition."""
    from pyiceberg.conversions import from_bytes

    def bound(raw: Mapping[int, bytes] | None) -> int | None:
        if not raw or field_id not in raw:
            return None
        return int(from_bytes(field_type, raw[field_id]))

    bucket = None
    if bucket_pos is not None and num_buckets:
        value = data_file.partition[bucket_pos]
        bucket = None if value is None else int(value)
    return FileBounds(int(data_file.file_size_in_bytes), int(data_file.record_count),
                      bound(data_file.lower_bounds), bound(data_file.upper_bounds),
                      bucket, num_buckets if bucket is not None else None)


def _bucket_field(spec: PartitionSpec, source_id: int) -> tuple[int | None, int | None]:
    """(position, num_buckets) of the spec's bucket field on the account column, if any."""
    from pyiceberg.transforms import BucketTransform

    for pos, pf in enumerate(spec.fields):
        if pf.source_id == source_id and isinstance(pf.transform, BucketTransform):
            return pos, pf.transform.num_buckets
    return None, None


def partition_files(table: Table, month_column: str, account_column: str, partition: str) -> list[FileBounds]:
    """Data files of one month partition (scan planning restricted to it)."""
    field = table.schema().find_field(account_column)
    specs = table.specs()
    tasks = table.scan(row_filter=equal(month_column, partition)).plan_files()
    out = []
    for t in tasks:
        pos, n = _bucket_field(specs[t.file.spec_id], field.field_id)
        out.append(decode_bounds(t.file, field.field_id, field.field_type, pos, n))
    return out


# ---------------------------------------------------------------------- throughput model


@dataclass(frozen=True)
class ThroughputModel:
    """seconds(partition) = intercept + slope * bytes; ``basis`` says where a and b come from."""

    intercept: float
    slope: float
    samples: int
    basis: str

    def seconds(self, size_bytes: int) -> float:
        return self.intercept + self.slope * size_bytes


def default_model(reason: str = "") -> ThroughputModel:
    b = 1.0 / DEFAULT_BYTES_PER_SECOND
    why = f" ({reason})" if reason else ""
    return ThroughputModel(
        DEFAULT_SECONDS_PER_PARTITION, b, 0,
        f"default{why}: a={DEFAULT_SECONDS_PER_PARTITION:.1f} s per partition, "
        f"b={b:.3e} s/byte ({DEFAULT_BYTES_PER_SECOND / 2**20:.0f} MiB/s)",
    )


def fit_model(samples: Sequence[tuple[float, float]]) -> ThroughputModel:
    """Least squares of seconds on bytes over ``(bytes, seconds)`` samples.

    Falls back to the defaults below :data:`MIN_SAMPLES` samples or when every sample
    has the same size (no slope can be learned). A negative fit is clamped (slope 0,
    intercept = mean) because a MERGE never gets faster with more bytes.
    """
    pts = [(float(x), float(y)) for x, y in samples
           if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
           and x >= 0 and y >= 0]
    n = len(pts)
    if n < MIN_SAMPLES:
        return default_model(f"{n} past partition(s), need {MIN_SAMPLES}")
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return default_model(f"{n} past partitions all of the same size")
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    a = my - b * mx
    note = ""
    if b < 0:
        a, b, note = my, 0.0, ", slope clamped to 0"
    elif a < 0:
        a, b, note = 0.0, sum(x * y for x, y in pts) / sum(x * x for x, _ in pts), ", intercept clamped to 0"
    return ThroughputModel(a, b, n, f"learned from {n} past partitions: a={a:.1f} s, b={b:.3e} s/byte{note}")


def audit_samples(rows: Iterable[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """(bytes, seconds) of committed partition attempts, one per (run, partition, attempt).

    The audit holds one row per backfill id of a consolidated run: duplicates are
    dropped. Bytes are what the commit read (``bytes_read``), else what it wrote.
    """
    seen: set[tuple[Any, Any, Any]] = set()
    out: list[tuple[float, float]] = []
    for r in rows:
        if r.get("status") != AttemptStatus.COMMITTED or r.get("duration_seconds") is None:
            continue
        size = r.get("bytes_read")
        if size is None:
            size = r.get("bytes_written")
        if size is None:
            continue
        key = (r.get("run_id"), r.get("target_partition"), r.get("attempt"))
        if key in seen:
            continue
        seen.add(key)
        out.append((float(size), float(r["duration_seconds"])))
    return out


def read_audit_samples(audit_table: Table) -> list[tuple[float, float]]:
    if audit_table.current_snapshot() is None:
        return []
    cols = ("status", "run_id", "target_partition", "attempt", "duration_seconds",
            "bytes_read", "bytes_written")
    committed = equal("status", AttemptStatus.COMMITTED.value)
    rows = audit_table.scan(row_filter=committed, selected_fields=cols).to_arrow()
    return audit_samples(rows.to_pylist())


def makespan(durations: Sequence[float], slots: int) -> float:
    """Wall time of running ``durations`` in order on ``slots`` workers (greedy, like the pool)."""
    if not durations:
        return 0.0
    free = [0.0] * max(1, min(slots, len(durations)))
    for d in durations:
        i = free.index(min(free))
        free[i] += d
    return max(free)


# ---------------------------------------------------------------------- estimate


@dataclass(frozen=True)
class PartitionEstimate:
    partition: str
    entries: int
    accounts: int
    data_files: int
    data_bytes: int
    records: int
    candidate_files: int
    candidate_bytes: int
    already_committed: bool
    seconds: float


@dataclass(frozen=True)
class Estimate:
    backfill_ids: tuple[str, ...]
    entries: int
    rejected_entries: int
    skipped_by_resume: tuple[str, ...]
    target_snapshot_id: int | None
    staging_snapshot_id: int | None
    partitions: tuple[PartitionEstimate, ...]
    basis: str
    max_parallel: int
    session_start_seconds: float
    partition_seconds: float
    wall_seconds: float

    def totals(self) -> dict[str, int]:
        ps = self.partitions
        return {k: sum(getattr(p, k) for p in ps) for k in
                ("data_files", "data_bytes", "records", "candidate_files", "candidate_bytes")}

    def to_json(self) -> str:
        data = asdict(self)
        data["totals"] = self.totals()
        return json.dumps(data, indent=2)

    def lines(self) -> list[str]:
        t = self.totals()
        out = [
            f"estimate for backfill {', '.join(self.backfill_ids)} "
            f"(target snapshot {self.target_snapshot_id}, staging snapshot {self.staging_snapshot_id})",
            f"  entries {self.entries}, rejected {self.rejected_entries}, partitions {len(self.partitions)}"
            + (f", skipped by --resume-from {len(self.skipped_by_resume)}" if self.skipped_by_resume else ""),
            f"  {'partition':<9} {'entries':>7} {'accts':>6} {'files':>6} {'MiB':>9} {'cand':>5} "
            f"{'cand MiB':>9} {'est s':>8}",
        ]
        for p in self.partitions:
            mark = "  (already committed)" if p.already_committed else ""
            out.append(f"  {p.partition:<9} {p.entries:>7} {p.accounts:>6} {p.data_files:>6} "
                       f"{p.data_bytes / 2**20:>9.2f} {p.candidate_files:>5} "
                       f"{p.candidate_bytes / 2**20:>9.2f} {p.seconds:>8.1f}{mark}")
        out += [
            f"  total: {t['data_files']} data files ({t['data_bytes'] / 2**20:.2f} MiB, "
            f"{t['records']} rows), {t['candidate_files']} candidate files "
            f"({t['candidate_bytes'] / 2**20:.2f} MiB) hold affected accounts",
            f"  model: {self.basis}",
            f"  partition work {self.partition_seconds:.0f} s; wall time with max parallel "
            f"{self.max_parallel}: ~{self.wall_seconds:.0f} s "
            f"(incl. {self.session_start_seconds:.0f} s Spark session start)",
        ]
        return out


def estimate(prepared: PreparedRun, catalog: Catalog, max_parallel: int | None = None) -> Estimate:
    """Estimate a prepared run from target metadata and past audit rows."""
    cfg, plan = prepared.cfg, prepared.plan
    slots = max_parallel if max_parallel is not None else cfg.max_parallel
    if slots < 1:
        raise ConfigError(f"--max-parallel must be at least 1, got {slots}")
    target = tables.load(catalog, cfg, "target")
    model = fit_model(read_audit_samples(tables.load(catalog, cfg, "audit")))
    t = cfg.tables
    parts: list[PartitionEstimate] = []
    for task in plan.tasks:
        files = partition_files(target, t.month_column, t.account_column, task.partition)
        n_cand, cand_bytes = count_candidates(files, (e.acct for e in task.entries))
        done = task.partition in prepared.already_committed
        parts.append(PartitionEstimate(
            partition=task.partition, entries=len(task.entries), accounts=task.accounts,
            data_files=len(files), data_bytes=sum(f.size_bytes for f in files),
            records=sum(f.record_count for f in files), candidate_files=n_cand,
            candidate_bytes=cand_bytes, already_committed=done,
            seconds=0.0 if done or n_cand == 0 else model.seconds(cand_bytes)))
    durations = [p.seconds for p in parts if p.seconds > 0]
    start = SESSION_START_SECONDS if durations else 0.0
    snap = target.current_snapshot()
    return Estimate(
        backfill_ids=prepared.backfill_ids, entries=len(plan.entries),
        rejected_entries=len(plan.rejected), skipped_by_resume=plan.skipped_by_resume,
        target_snapshot_id=snap.snapshot_id if snap else None,
        staging_snapshot_id=prepared.staging_snapshot_id, partitions=tuple(parts),
        basis=model.basis, max_parallel=slots, session_start_seconds=start,
        partition_seconds=sum(durations), wall_seconds=start + makespan(durations, slots))


def pending_backfill_ids(catalog: Catalog, cfg: Config, month: str | None) -> list[str]:
    """Backfill ids with pending rows (of ``month``): the seed's estimate names no id."""
    from pyiceberg.expressions import And

    staging = tables.load(catalog, cfg, "staging")
    if staging.current_snapshot() is None:
        return []
    flt: BooleanExpression = equal("status", StagingStatus.PENDING.value)
    if month is not None:
        flt = And(flt, equal("backfill_month", month))
    col = staging.scan(row_filter=flt, selected_fields=("backfill_id",)).to_arrow().column("backfill_id")
    return sorted({b for b in col.to_pylist() if b is not None})
