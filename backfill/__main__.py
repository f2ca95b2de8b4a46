"""``python -m backfill`` — the same as the ``iceberg-backfill`` command."""

from backfill.cli import main

raise SystemExit(main())
