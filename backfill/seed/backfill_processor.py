"""The seed's ``backfill_processor`` module: ``IcebergBackfillProcessor``."""

from __future__ import annotations

from backfill.api import IcebergBackfillProcessor

__all__ = ["IcebergBackfillProcessor"]
