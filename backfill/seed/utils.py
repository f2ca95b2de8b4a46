"""The seed's ``utils`` module: report, verification and audit clean-up."""

from __future__ import annotations

from backfill.api import cleanup_old_audits, generate_backfill_report, verify_backfill

__all__ = ["cleanup_old_audits", "generate_backfill_report", "verify_backfill"]
