"""The original description's module names, so its snippets run with one change each.

The seed README imports ``from config import HISTORY_COLUMNS``, ``from run_backfill import
create_spark_session``, ``from backfill_processor import ...``, ``from backfill_batch import
...``, ``from backfill_sql import ...`` and ``from utils import ...``. Here each of those is a
module of this package re-exporting the real API (:mod:`backfill.api`, :mod:`backfill.config`),
so the only change a snippet needs is ``from X import ...`` ->
``from backfill.seed.X import ...``. Nothing is implemented here: one API, two spellings.
"""
