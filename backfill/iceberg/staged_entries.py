"""Pending staging rows to entries, checked column by column in Arrow.

Why not row by row: a seed-sized backfill stages a million rows, and turning each into
a dict and each value through the row checks took minutes and gigabytes on the driver
before anything was planned. The checks of :func:`backfill.core.entries.validate_rows`
mostly follow from the column types (a DECIMAL(18,2) value always fits, a long is a
64-bit account) or concern few distinct values (ids, months), so a clean table is proven
clean here without visiting its rows. When any check fails, the same rows go through
``validate_rows``, which names every bad row exactly as before; nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from backfill.core.entries import PACKED_SEPARATOR, VALUE_PRECISION, VALUE_SCALE, Entry, validate_rows
from backfill.core.identifiers import check_backfill_id
from backfill.core.months import is_month
from backfill.errors import InputError
from backfill.iceberg.tables import StagingRead

if TYPE_CHECKING:
    import pyarrow as pa

KEY_COLUMNS = ("backfill_id", "acct", "backfill_month")
#: Rows packed at a time (see :func:`_packed_values`).
PACK_ROWS = 100_000


def read_entries(read: StagingRead, value_columns: Sequence[str]) -> list[Entry]:
    """The read's rows as sorted entries; one InputError naming every bad row otherwise."""
    table = read.table
    if table is None or not table.num_rows:
        return []
    if not _provably_clean(table, value_columns):
        return validate_rows(read.iter_rows(), value_columns)
    bids, months = _shared_strings(table, "backfill_id"), _shared_strings(table, "backfill_month")
    accts = table.column("acct").to_pylist()
    entries = [Entry.from_packed(m, a, b, v)
               for m, a, b, v in zip(months, accts, bids, _packed_values(table, value_columns), strict=True)]
    entries.sort(key=Entry.sort_key)
    return entries


def _packed_values(table: pa.Table, value_columns: Sequence[str]) -> list[str]:
    """Each row's values as one text (:data:`backfill.core.entries.PACKED_SEPARATOR`),
    made in Arrow: a DECIMAL(18,2) cast to string is the ``str`` of its Decimal."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: list[str] = []
    # in slices: the texts of twenty columns of a million rows would briefly cost more than the entries
    for start in range(0, table.num_rows, PACK_ROWS):
        part = table.slice(start, PACK_ROWS)
        texts = [pc.fill_null(pc.cast(part.column(c), pa.string()), "") for c in value_columns]
        joined = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, PACKED_SEPARATOR)
        out += joined.to_pylist()
    return out


def _provably_clean(table: pa.Table, value_columns: Sequence[str]) -> bool:
    """True when every check of ``validate_rows`` holds for every row of ``table``."""
    import pyarrow as pa

    if not all(c in table.column_names for c in (*KEY_COLUMNS, *value_columns)):
        return False
    acct = table.column("acct")
    if not pa.types.is_integer(acct.type) or acct.type.bit_width > 64 or pa.types.is_uint64(acct.type) \
            or acct.null_count:
        return False
    if not all(_fits_decimal(table.schema.field(c).type) for c in value_columns):
        return False
    if not all(_valid_id(b) for b in table.column("backfill_id").unique().to_pylist()):
        return False
    if not all(is_month(m) for m in table.column("backfill_month").unique().to_pylist()):
        return False
    # one pending row per (id, account, month)
    return table.select(list(KEY_COLUMNS)).group_by(list(KEY_COLUMNS)).aggregate([]).num_rows == table.num_rows


def _fits_decimal(t: pa.DataType) -> bool:
    """Every value of this type fits DECIMAL(18,2) exactly (NULLs are allowed)."""
    import pyarrow as pa

    return pa.types.is_decimal(t) and t.scale <= VALUE_SCALE and t.precision - t.scale <= VALUE_PRECISION - VALUE_SCALE


def _valid_id(bid: object) -> bool:
    try:
        check_backfill_id(bid)
    except InputError:
        return False
    return True


def _shared_strings(table: pa.Table, column: str) -> list[str]:
    """The column as Python strings, one object per distinct value (a million entries of
    twelve months hold twelve strings, not a million)."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(table.column(column)).combine_chunks()
    words = encoded.dictionary.to_pylist()
    return [words[i] for i in encoded.indices.to_pylist()]
