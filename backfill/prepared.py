"""The prepared run: everything decided before the first write, handed from planning to execution.

It sits just above the configuration so that every layer that executes or renders a
run (the SQL script, the Ray executor, the operations) can take it without reaching up
into the module that builds it (:mod:`backfill.ops.run`).
"""

from __future__ import annotations

from dataclasses import dataclass

from backfill.config import Config
from backfill.core.plan import Plan


@dataclass(frozen=True)
class PreparedRun:
    """A validated, planned run that has not written anything yet.

    Attributes:
        cfg: the validated configuration.
        backfill_ids: the ids whose pending entries the run applies, sorted.
        run_id: this run's id (audit rows, commit tags, actor names).
        plan: partitions, their entries and digests, rejected entries.
        staging_snapshot_id: the staging snapshot the entries were read and validated at.
        already_committed: partition -> snapshot id of work found committed before the run.
    """

    cfg: Config
    backfill_ids: tuple[str, ...]
    run_id: str
    plan: Plan
    staging_snapshot_id: int | None
    already_committed: dict[str, int]
