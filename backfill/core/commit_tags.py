"""The tags every backfill commit carries in its Iceberg snapshot summary.

Why tags: the snapshot history is the one record that cannot disagree with the table.
A commit names the partitions it rewrote and, for each, the digest of the entries it
applied; a later run that finds (partition, digest) in the history knows that exact
work is in the table and does not redo it, whatever happened to the driver.

One commit may cover several partitions (one MERGE per batch of partitions). The two
keys then hold comma-separated lists in the same order; a one-partition commit reads
exactly as before (``backfill.partition = 2024-05``). Months and hex digests never
contain a comma, and both are validated before they are written.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

from backfill.core.identifiers import check_backfill_id, check_identifier
from backfill.core.months import is_month
from backfill.core.names import ROLLBACK_BRANCH_PREFIX, RUN_BRANCH_PREFIX

KEY_PARTITION = "backfill.partition"
KEY_DIGEST = "backfill.digest"
KEY_RUN = "backfill.run-id"
KEY_IDS = "backfill.ids"
#: Every key a backfill commit is tagged with.
TAG_KEYS = frozenset({KEY_PARTITION, KEY_DIGEST, KEY_RUN, KEY_IDS})

_DIGEST = re.compile(r"^[0-9a-f]{8,64}$")


def commit_properties(work: Iterable[tuple[str, str]], run_id: str,
                      backfill_ids: Sequence[str]) -> dict[str, str]:
    """Summary properties for a commit of ``work``: (partition, digest) pairs."""
    pairs = sorted(set(work))
    if not pairs:
        raise ValueError("a backfill commit must name at least one partition")
    for part, dig in pairs:
        if not is_month(part):
            raise ValueError(f"partition {part!r} is not a month 'YYYY-MM'")
        if not _DIGEST.match(dig):
            raise ValueError(f"digest {dig!r} is not a hex digest")
    if len({p for p, _ in pairs}) != len(pairs):
        raise ValueError(f"a partition appears twice in one commit: {pairs}")
    return {KEY_PARTITION: ",".join(p for p, _ in pairs), KEY_DIGEST: ",".join(d for _, d in pairs),
            KEY_RUN: run_id, KEY_IDS: ",".join(sorted({check_backfill_id(b) for b in backfill_ids}))}


def tagged_work(props: Mapping[str, str] | None) -> dict[str, str]:
    """{partition: digest} a commit's summary says it applied; {} for other commits.

    A summary whose two lists do not line up (hand-edited, truncated) is treated as not
    tagged: claiming work that may not be in the table would lose an update on resume.
    """
    if not props:
        return {}
    parts = [p for p in str(props.get(KEY_PARTITION) or "").split(",") if p]
    digs = [d for d in str(props.get(KEY_DIGEST) or "").split(",") if d]
    if not parts or len(parts) != len(digs):
        return {}
    return dict(zip(parts, digs, strict=True))


def tagged_partitions(props: Mapping[str, str] | None) -> list[str]:
    """Partitions a commit names, with or without a digest (older or partial tags included)."""
    if not props:
        return []
    return [p for p in str(props.get(KEY_PARTITION) or "").split(",") if p]


def tagged_ids(props: Mapping[str, str] | None) -> set[str]:
    """Backfill ids a commit was made for."""
    if not props:
        return set()
    return {b for b in str(props.get(KEY_IDS) or "").split(",") if b}


def run_branch(backfill_ids: Iterable[str]) -> str:
    """The write-audit-publish branch of a run of ``backfill_ids``.

    Derived from the ids alone, so a resumed run (another driver, another day) finds the
    branch its predecessor committed to. A hash keeps it a plain identifier whatever the
    ids hold, and short whatever their number.
    """
    return _branch(RUN_BRANCH_PREFIX, backfill_ids)


def rollback_branch(backfill_ids: Iterable[str]) -> str:
    """The branch a rollback of ``backfill_ids`` writes to before it publishes."""
    return _branch(ROLLBACK_BRANCH_PREFIX, backfill_ids)


def _branch(prefix: str, backfill_ids: Iterable[str]) -> str:
    ids = ",".join(sorted({check_backfill_id(b) for b in backfill_ids}))
    return check_identifier(prefix + hashlib.sha256(ids.encode()).hexdigest()[:12], "branch")
