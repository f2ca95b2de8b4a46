"""The seed's entry point: ``python run_backfill.py <command> ...`` is ``python -m backfill``.

A thin script at the top of the repository, because the original description runs its
commands this way (``python run_backfill.py setup --sample-data``, ``... backfill --report
--verify``). It also keeps the seed's ``from run_backfill import create_spark_session``
working when run from here (the package spelling is ``backfill.seed.run_backfill``).
"""

from __future__ import annotations

from backfill.cli import main
from backfill.seed.run_backfill import create_spark_session

__all__ = ["create_spark_session", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
