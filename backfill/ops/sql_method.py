"""``backfill --method sql``: the reviewable script's statements, run in order in one session.

Unlike the merge method it does not tag commits with the entries digest, so a later
merge-method run redoes these partitions (harmless: the update rule is idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from actors.partition_actor import one_session, run_statement
from backfill.errors import BackfillError
from backfill.prepared import PreparedRun
from backfill.sql.script import script_items

if TYPE_CHECKING:
    from cluster.catalog import ResolvedCatalog

log = logging.getLogger(__name__)


def run_script(prepared: PreparedRun, resolved_catalog: ResolvedCatalog,
               progress: Callable[[str], None] | None = None) -> int:
    """Run the script's statements in order in one Spark session on one Ray actor.

    Returns the number of statements run. A failing statement stops the script: earlier
    statements stay committed, and rerunning is safe because every statement is idempotent.
    """
    items = script_items(prepared)
    say = progress or log.info
    with one_session(prepared.cfg, resolved_catalog, f"backfill-sql-{prepared.run_id}") as actor:
        for i, (note, stmt) in enumerate(items, start=1):
            try:
                run_statement(actor, stmt)
            except BackfillError as exc:
                raise type(exc)(f"statement {i}/{len(items)} ({note}): {exc}; earlier statements are "
                                "committed, rerun to finish (statements are idempotent)") from None
            say(f"[{i}/{len(items)}] {note}")
    return len(items)
