"""The prepared run: everything decided before the first write, handed from planning to execution.

It sits just above the configuration so that every layer that executes or renders a
run (the SQL script, the Ray executor, the operations) can take it without reaching up
into the module that builds it (:mod:`backfill.ops.run`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from backfill.config import Config
from backfill.core.plan import Plan
from backfill.core.series import Resolution

_NOTHING_SUPERSEDED = Resolution((), (), ())

#: Which months of a run's ids are read: one month for every id, none (every month), or per
#: id (``{id: month or None}``; an id left out of the mapping is read for every month).
MonthFilter = str | Mapping[str, str | None] | None


@dataclass(frozen=True)
class RunRequest:
    """The request a run was planned from, beside its ids."""

    backfill_month: MonthFilter = None
    resume_from: str | None = None


class DeferredNote:
    """A plan note worked out in a background thread while the run starts.

    Why: the array-length check reads every data file the run touches on the driver (up
    to a GiB), to produce a warning the run never waits on; run before the first MERGE it
    was the largest part of planning. A run starts its check with the plan and reads the
    note once its MERGEs are done, before it publishes. The thread is a daemon: a run that
    stops early does not wait for it. A check that fails says so in the note: it is advice,
    and ``verify`` reports long arrays afterwards in any case.
    """

    def __init__(self, work: Callable[[], str | None], name: str) -> None:
        self._done = threading.Event()
        self._note: str | None = None
        self._name = name
        threading.Thread(target=self._run, args=(work,), name=name, daemon=True).start()

    def _run(self, work: Callable[[], str | None]) -> None:
        try:
            self._note = work()
        except Exception as exc:  # noqa: BLE001 - advice only: reported in the note, see docstring
            self._note = f"{self._name} could not run ({type(exc).__name__}: {str(exc)[:300]}); `verify` checks"
        finally:
            self._done.set()

    def result(self) -> str | None:
        """The note (None: nothing to say), once the work is done."""
        self._done.wait()
        return self._note


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
        resolution: the series rule's verdict: which of the run's entries a later-staged
            row supersedes, and which applied rows of earlier runs this run displaces.
        branch: the write-audit-publish branch the run commits to; None commits to main.
        request: how the run was asked for (month filter, resume month), so a run whose
            branch fell behind main can be planned again on the new main.
        later_note: a note of the plan still being worked out (the array-length check of
            a run that did not wait for it); the run adds it to its notes before publishing.
    """

    cfg: Config
    backfill_ids: tuple[str, ...]
    run_id: str
    plan: Plan
    staging_snapshot_id: int | None
    already_committed: dict[str, int]
    resolution: Resolution = field(default=_NOTHING_SUPERSEDED)
    branch: str | None = None
    request: RunRequest = field(default_factory=RunRequest)
    later_note: DeferredNote | None = None
