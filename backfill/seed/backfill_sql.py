"""The seed's ``backfill_sql`` module: the reviewable SQL script of a backfill."""

from __future__ import annotations

from backfill.api import generate_sql_script

__all__ = ["generate_sql_script"]
