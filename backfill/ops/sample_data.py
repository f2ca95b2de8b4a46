"""Realistic generated data for demos, tests and benchmarks.

The generator is seeded and pure (it returns rows; :mod:`backfill.ops.setup` writes them),
and it deliberately produces the cases that break naive backfills: arrays shorter than
the offset, NULL arrays, accounts opened after the first month (missing rows), staged
months at offset 0 and W-1, months outside every window, several months for one
account, and NULL staged values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from backfill.config import Config
from backfill.core.months import add_months, month_range, parse_month
from backfill.core.states import StagingStatus


@dataclass(frozen=True)
class SampleSpec:
    """Size and shape of generated data."""

    accounts: int = 200
    first_month: str = "2022-01"
    months: int = 24
    staged_accounts: int = 40
    backfill_id: str = "bf-demo-001"
    seed: int = 7
    null_array_rate: float = 0.05
    short_array_rate: float = 0.15
    null_value_rate: float = 0.2

    @property
    def last_month(self) -> str:
        return add_months(self.first_month, self.months - 1)


def account_ids(n: int) -> list[int]:
    """Spread-out account ids so they land in many buckets."""
    return [100_000 + i * 7_919 for i in range(n)]


def _money(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(-50_000, 5_000_000)).scaleb(-2)


def target_rows(cfg: Config, spec: SampleSpec) -> list[dict[str, Any]]:
    """History rows: one per (account, month) from the account's open month on."""
    rng = random.Random(spec.seed)
    t = cfg.tables
    months = month_range(spec.first_month, spec.last_month)
    rows: list[dict[str, Any]] = []
    for acct in account_ids(spec.accounts):
        # a third of the accounts open after the first month: their early rows are missing
        open_at = 0 if rng.random() < 0.66 else rng.randint(1, max(1, len(months) // 2))
        for mi, month in enumerate(months[open_at:], start=open_at):
            row: dict[str, Any] = {t.account_column: acct, t.month_column: month}
            age = mi - open_at + 1
            for hc in t.history_columns:
                r = rng.random()
                if r < spec.null_array_rate:
                    row[hc.array_column] = None
                    continue
                length = min(t.window, age)
                if r < spec.null_array_rate + spec.short_array_rate:
                    length = rng.randint(0, length)
                row[hc.array_column] = [None if rng.random() < 0.03 else _money(rng) for _ in range(length)]
            rows.append(row)
    return rows


def staging_rows(cfg: Config, spec: SampleSpec) -> list[dict[str, Any]]:
    """Pending staging rows covering the edge cases listed in the module docstring."""
    rng = random.Random(spec.seed + 1)
    t = cfg.tables
    w = t.window
    accts = account_ids(spec.accounts)
    chosen = rng.sample(accts, min(spec.staged_accounts, len(accts)))
    first, last = spec.first_month, spec.last_month
    candidate_months = [
        last,                               # offset 0 in the newest partition only
        add_months(last, -(w - 1)),         # offset W-1 in the newest partition
        first,                              # the oldest partition, offset 0
        add_months(first, -(w - 1)),        # only reaches the first partition at offset W-1
        add_months(first, -(w + 3)),        # window misses every partition
    ]
    rows: list[dict[str, Any]] = []
    for i, acct in enumerate(chosen):
        n_months = 1 + (i % 3)  # several months for one account
        months: set[str] = set()
        if i < len(candidate_months):
            months.add(candidate_months[i])
        while len(months) < n_months:
            span = parse_month(last) - parse_month(first)
            months.add(add_months(first, rng.randint(-(w // 2), span)))
        for month in sorted(months):
            row: dict[str, Any] = {
                "backfill_id": spec.backfill_id, "acct": acct, "backfill_month": month,
                "status": StagingStatus.PENDING.value,
            }
            for hc in t.history_columns:
                row[hc.value_column] = None if rng.random() < spec.null_value_rate else _money(rng)
            rows.append(row)
    return rows
