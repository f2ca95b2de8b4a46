"""The seed's ``run_backfill`` module: ``create_spark_session``.

The seed's command line (``python run_backfill.py <command> ...``) is the top-level
``run_backfill.py`` of the repository, the same as ``python -m backfill``.
"""

from __future__ import annotations

from backfill.api import create_spark_session

__all__ = ["create_spark_session"]
