"""Generated benchmark data: a target table (vectorised, Arrow) and staged entries.

The target has the shape of ``backfill.ops.sample_data`` (accounts opening after the first
month, NULL arrays, short arrays, NULL elements) but is built with numpy/pyarrow so that
hundreds of thousands of rows take seconds, not minutes. Staged entries are plain Python
(they are few): a fraction of the accounts, each with values for the newest
``staged_months`` months, about 20 % of the values NULL ("leave untouched").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from backfill.config import Config
from backfill.core.months import add_months, month_range
from backfill.iceberg.schema import target_schema
from backfill.ops.sample_data import account_ids


@dataclass(frozen=True)
class BenchSize:
    accounts: int = 20_000
    months: int = 24
    columns: int = 4
    affected: float = 0.01      # fraction of accounts with staged entries
    staged_months: int = 12     # newest months staged for every affected account
    first_month: str = "2022-01"
    seed: int = 17

    @property
    def month_list(self) -> list[str]:
        return month_range(self.first_month, add_months(self.first_month, self.months - 1))

    @property
    def affected_accounts(self) -> int:
        return max(1, round(self.accounts * self.affected))


def _decimal_array(unscaled: np.ndarray, valid: np.ndarray) -> Any:
    """decimal128(18, 2) Arrow array from unscaled int64 cents (two's complement to 128 bit)."""
    import pyarrow as pa

    n = len(unscaled)
    words = np.empty((n, 2), dtype=np.int64)
    words[:, 0] = unscaled
    words[:, 1] = np.where(unscaled < 0, -1, 0)
    bitmap = pa.array(valid, type=pa.bool_()).buffers()[1] if not valid.all() else None
    return pa.Array.from_buffers(pa.decimal128(18, 2), n, [bitmap, pa.py_buffer(words.tobytes())])


def target_arrow(cfg: Config, size: BenchSize, accounts: list[int] | None = None) -> Any:
    """The target table's rows as an Arrow table in the Iceberg schema's column order."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import schema_to_pyarrow


    t = cfg.tables
    rng = np.random.default_rng(size.seed)
    accts = np.array(accounts if accounts is not None else account_ids(size.accounts), dtype=np.int64)
    months = size.month_list
    n_m = len(months)
    opens = np.where(rng.random(len(accts)) < 0.66, 0, rng.integers(1, max(2, n_m // 2 + 1), len(accts)))
    # rows ordered by month then account (as setup writes them): sorted files per bucket
    mi_grid, ai_grid = np.meshgrid(np.arange(n_m), np.arange(len(accts)), indexing="ij")
    keep = mi_grid >= opens[ai_grid]
    mi = mi_grid[keep]
    ai = ai_grid[keep]
    n = len(mi)
    age = mi - opens[ai] + 1
    cols: dict[str, Any] = {
        t.account_column: pa.array(accts[ai]),
        t.month_column: pa.array(np.array(months, dtype=object)[mi], type=pa.string()),
    }
    for hc in t.history_columns:
        r = rng.random(n)
        full = np.minimum(t.window, age)
        short = (r >= 0.05) & (r < 0.20)
        length = np.where(short, (rng.random(n) * (full + 1)).astype(np.int64), full)
        length = np.where(r < 0.05, 0, length)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(length, out=offsets[1:])
        total = int(offsets[-1])
        values = _decimal_array(rng.integers(-50_000, 5_000_000, total), rng.random(total) >= 0.03)
        mask = pa.array(r < 0.05)
        cols[hc.array_column] = pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)
    schema = schema_to_pyarrow(target_schema(cfg), include_field_ids=False)
    return pa.table([cols[f.name].cast(f.type) for f in schema], schema=schema)


def staged_entries(cfg: Config, size: BenchSize, backfill_id: str) -> list[dict[str, Any]]:
    """Staging rows: ``affected`` of the accounts, each with the newest ``staged_months`` months."""
    rng = random.Random(size.seed + 1)
    accts = account_ids(size.accounts)
    chosen = sorted(rng.sample(accts, size.affected_accounts))
    staged = size.month_list[-size.staged_months:]
    rows = []
    for acct in chosen:
        for month in staged:
            row: dict[str, Any] = {"backfill_id": backfill_id, "acct": acct, "backfill_month": month,
                                   "status": "pending"}
            for hc in cfg.tables.history_columns:
                row[hc.value_column] = (None if rng.random() < 0.2
                                        else Decimal(rng.randint(-50_000, 5_000_000)).scaleb(-2))
            rows.append(row)
    return rows
