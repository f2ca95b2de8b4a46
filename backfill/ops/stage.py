"""``stage``: staged entries from a CSV or Parquet file or an Iceberg table, without SQL.

Why it exists: hand-written ``INSERT INTO backfill_staging`` is where typos (a misspelt
column silently NULL, a month '2024-6', a value rounded to cents) enter a backfill, and
the run only finds them later. Here every row is checked with the run's own rules
(:func:`backfill.core.entries.validate_rows`) *before* anything is written, every
problem is named by its row number as a person sees it in the file and by its column,
and the whole source is appended in one commit, or not at all.

Values are read exactly: CSV cells are parsed as ``Decimal`` from their text (never
through a float), Parquet decimals and integers convert exactly, and a float is taken
only when it stands for exactly one DECIMAL(18,2) value; anything else is an error,
never a silent rounding. Sources are read in Arrow record batches and the staging
table is built column-wise, so a file of a million rows stays within a few hundred MB.
"""

from __future__ import annotations

import csv
import difflib
import logging
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backfill.config import Config, qualify
from backfill.core.entries import VALUE_PRECISION, VALUE_SCALE, validate_rows
from backfill.core.identifiers import check_backfill_id
from backfill.core.states import StagingStatus
from backfill.errors import ConfigError, InputError, TableError
from backfill.iceberg import tables
from backfill.iceberg.filters import equal
from backfill.iceberg.schema import STAGING_TAIL, staging_schema

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

#: Rows validated and converted at a time: bounds the Python objects alive at once.
BATCH_ROWS = 16_384
#: Problems shown in full in one error (all are counted), like ``validate_rows``.
SHOWN_PROBLEMS = 20
#: Snapshot summary keys of a staging commit: which id and source it came from.
KEY_STAGED_ID = "backfill.staged-id"
KEY_STAGED_FROM = "backfill.staged-from"

KEY_COLUMNS = ("acct", "backfill_month")
_CENT = Decimal(1).scaleb(-VALUE_SCALE)
_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]{1,16}(?:\.[0-9]{0,2})?")
#: struct formats that round a Python float to the width of its Arrow column
_FLOAT_WIDTH = {16: "e", 32: "f"}
#: a key that passes the checks, to check one cell of a row on its own
_GOOD_ACCT, _GOOD_MONTH = 0, "2000-01"


# ------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """Rows to stage as Arrow record batches, and how errors name them.

    ``csv_path`` is set for CSV files: errors then add the line of each row, which is
    what an editor shows (quoted newlines and blank lines make the two differ).
    """

    label: str
    schema: pa.Schema
    batches: Iterable[pa.RecordBatch]
    csv_path: Path | None = None


def open_file(path: str | Path) -> Source:
    """A CSV (.csv) or Parquet (.parquet, .pq) file as a Source; nothing is read beyond its header.

    Checked before any catalog is opened, so a typo in the path costs nothing.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ConfigError(f"SOURCE {str(p)!r} must be a .csv, .parquet or .pq file (or use --from-table)")
    if not p.is_file():
        raise ConfigError(f"SOURCE {str(p)!r} does not exist or is not a file")
    return _open_csv(p) if suffix == ".csv" else _open_parquet(p)


def _open_csv(path: Path) -> Source:
    """Every column is read as text, so values are parsed exactly (never through a float)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = _csv_header(path)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header}, null_values=[""],
                                   strings_can_be_null=True, quoted_strings_can_be_null=True)
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=4 << 20),
                                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                                convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, len(header), exc) from None
    return Source(path.name, reader.schema, _csv_batches(path, len(header), reader), csv_path=path)


def _csv_header(path: Path) -> list[str]:
    """Column names of a CSV file; InputError for an empty or non-UTF-8 file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path.name}: cannot read the header as UTF-8 CSV ({exc}); nothing was written") from None
    if not header:
        raise InputError(f"{path.name} is empty: expected a header line (acct,backfill_month,...) and data rows; "
                         "nothing was written")
    return header


def _csv_batches(path: Path, width: int, reader: Any) -> Iterator[pa.RecordBatch]:
    """The reader's batches; a parse error (ragged row, bad UTF-8) becomes an InputError naming the row."""
    import pyarrow as pa

    try:
        yield from reader
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, width, exc) from None


def _csv_error(path: Path, width: int, exc: Exception) -> InputError:
    """Why pyarrow could not parse the file, with the first row whose field count is wrong."""
    for row, line, record in _csv_records(path):
        if len(record) != width:
            return InputError(f"{path.name}: row {row} (line {line}) has {len(record)} field(s) but the header "
                              f"has {width}; nothing was written")
    return InputError(f"{path.name} cannot be read as UTF-8 CSV: {exc}; nothing was written")


def _csv_records(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(data row, line it starts on, fields) of each non-blank record, counted as pyarrow counts rows."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        row, start = 0, reader.line_num + 1
        for record in reader:
            if record:  # pyarrow skips blank lines; so does the row count
                row += 1
                yield row, start, record
            start = reader.line_num + 1


def _open_parquet(path: Path) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path.name} is not a readable Parquet file ({exc}); nothing was written") from None
    return Source(path.name, pf.schema_arrow, pf.iter_batches(batch_size=BATCH_ROWS))


def table_identifier(cfg: Config, name: str) -> str:
    """'namespace.table' of ``--from-table [catalog.]namespace.table``; checked before any catalog opens."""
    _, ns, table_name = qualify(name, cfg.catalog.name, "--from-table")
    if (ns, table_name) == cfg.table_parts("staging")[1:]:
        raise ConfigError(f"--from-table {name!r} is the staging table itself")
    return f"{ns}.{table_name}"


def open_table(catalog: Catalog, identifier: str) -> Source:
    """An existing Iceberg table (``namespace.table``) as a Source: its current snapshot, batch by batch."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        table = catalog.load_table(identifier)
    except (NoSuchTableError, NoSuchNamespaceError):
        raise TableError(f"--from-table: table {identifier} does not exist") from None
    reader = table.scan().to_arrow_batch_reader()
    return Source(f"table {identifier}", reader.schema, reader)


# ------------------------------------------------------------------ reading values


def _is_text(typ: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ))


def _plain(typ: pa.DataType) -> pa.DataType:
    """The value type of a dictionary-encoded column (pandas categoricals), else the type."""
    import pyarrow as pa

    return typ.value_type if pa.types.is_dictionary(typ) else typ


def _decoded(arr: pa.Array) -> pa.Array:
    import pyarrow as pa

    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _account_text(text: str | None) -> int | str | None:
    """An account number from text; other text stays text, so the check names it."""
    if text is None or _INT_TEXT.fullmatch(text) is None:
        return text
    return int(text)


def _trimmed(d: Decimal) -> Decimal:
    """``d`` without trailing zeros past the cents (1.250 is 1.25), which is no rounding."""
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp < -VALUE_SCALE:
        try:
            q = d.quantize(_CENT)
        except InvalidOperation:  # too many digits for the context: the check reports it
            return d
        return q if q == d else d
    return d


def _value_text(text: str | None) -> Decimal | str | None:
    """A value parsed from its text, exactly; text that is not a number stays text, so the check names it."""
    if text is None:
        return None
    if _PLAIN_NUMBER.fullmatch(text):  # the common case, which needs no trimming
        return Decimal(text)
    try:
        return _trimmed(Decimal(text))
    except (InvalidOperation, ValueError):
        return text


def _value_float(f: float | None, bits: int = 64) -> Decimal | float | None:
    """The one DECIMAL(18,2) value a float stands for, or the float itself (which the check refuses).

    A float stands for the cents value ``c`` when ``c`` is the value nearest to it that rounds
    back to it, and neither neighbour (``c`` +- 0.01) does: 0.1 is 0.10, while 0.125 and
    floats too large to hold every cent have no single exact value and are errors.
    """
    if f is None:
        return None
    fmt = _FLOAT_WIDTH.get(bits)

    def same(d: Decimal) -> bool:
        x = float(d)
        try:
            return (struct.unpack(fmt, struct.pack(fmt, x))[0] if fmt else x) == f
        except OverflowError:
            return False

    try:
        c = Decimal(f).quantize(_CENT)
    except InvalidOperation:  # nan, inf, or more digits than the context holds
        return f
    if same(c) and not same(c + _CENT) and not same(c - _CENT):
        return c
    return f


Converter = Callable[["pa.Array"], list[Any]]


def _value_converter(typ: pa.DataType) -> Converter | None:
    """How a value column of Arrow type ``typ`` becomes Decimals, or None when it cannot."""
    import pyarrow as pa

    if pa.types.is_decimal(typ) and typ.scale <= VALUE_SCALE:
        return lambda a: a.to_pylist()
    if pa.types.is_decimal(typ):
        return lambda a: [None if v is None else _trimmed(v) for v in a.to_pylist()]
    if pa.types.is_integer(typ):
        return lambda a: [None if v is None else Decimal(v) for v in a.to_pylist()]
    if pa.types.is_floating(typ):
        bits = typ.bit_width
        return lambda a: [_value_float(v, bits) for v in a.to_pylist()]
    if _is_text(typ):
        return lambda a: [_value_text(v) for v in a.to_pylist()]
    if pa.types.is_null(typ):
        return lambda a: [None] * len(a)
    return None


def _key_converter(name: str, typ: pa.DataType) -> Converter | None:
    """How ``acct`` (integers, or integer text) or a text column becomes Python values."""
    import pyarrow as pa

    if pa.types.is_null(typ):
        return lambda a: [None] * len(a)
    if name == "acct" and pa.types.is_integer(typ):
        return lambda a: a.to_pylist()
    if name == "acct" and _is_text(typ):
        return lambda a: [_account_text(v) for v in a.to_pylist()]
    if name != "acct" and _is_text(typ):
        return lambda a: a.to_pylist()
    return None


# ------------------------------------------------------------------ column checks


def _header_problems(names: Sequence[str], value_columns: Sequence[str]) -> list[str]:
    """Duplicate, missing, tool-set and unknown columns of a source (a typo is never ignored)."""
    problems = [f"column {n!r} appears {names.count(n)} times" for n in sorted(set(names)) if names.count(n) > 1]
    problems += [f"column {n!r} is missing" for n in KEY_COLUMNS if n not in names]
    problems += [f"column {n!r} is set by `stage` (status 'pending', created_at now); remove it"
                 for n in STAGING_TAIL if n in names]
    known = {*KEY_COLUMNS, "backfill_id", *value_columns, *STAGING_TAIL}
    for n in (n for n in dict.fromkeys(names) if n not in known):
        close = difflib.get_close_matches(n.strip().lower(), sorted(known - set(STAGING_TAIL)), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"unknown column {n!r}{hint}")
    if not problems and not set(names) & set(value_columns):
        problems.append("none of the value columns is present, so every row would change nothing")
    return problems


def _converters(schema: pa.Schema, value_columns: Sequence[str], label: str) -> dict[str, Converter]:
    """A converter per column of ``schema``; InputError naming every bad column first."""
    names = list(schema.names)
    problems = _header_problems(names, value_columns)
    if problems:
        raise _column_error(label, problems, value_columns)
    converters: dict[str, Converter] = {}
    for f in schema:
        typ = _plain(f.type)
        conv = _value_converter(typ) if f.name in value_columns else _key_converter(f.name, typ)
        if conv is None:
            want = ("decimals, integers, floats or text" if f.name in value_columns
                    else "integers or integer text" if f.name == "acct" else "text")
            problems.append(f"column {f.name!r} has type {f.type}; it must hold {want}")
        else:
            converters[f.name] = conv
    if problems:
        raise _column_error(label, problems, value_columns)
    return converters


def _column_error(label: str, problems: Sequence[str], value_columns: Sequence[str]) -> InputError:
    return InputError(
        f"{label}: its columns do not fit the staging table; nothing was written:\n  " + "\n  ".join(problems)
        + "\n  expected: acct, backfill_month, optionally backfill_id, and any of the value columns "
        + ", ".join(value_columns)
    )


# ------------------------------------------------------------------- row checks


@dataclass(frozen=True)
class Problem:
    """One problem: the rows (1-based data rows) and columns it is about, and why."""

    rows: tuple[int, ...]
    columns: tuple[str, ...]
    reason: str


@dataclass
class _Findings:
    """Problems found so far: the first ``SHOWN_PROBLEMS`` in full, every bad row counted."""

    shown: list[Problem] = field(default_factory=list)
    bad_rows: int = 0
    dropped: bool = False

    @property
    def full(self) -> bool:
        return len(self.shown) >= SHOWN_PROBLEMS

    def add(self, problems: Iterable[Problem], rows: int) -> None:
        self.bad_rows += rows
        for p in problems:
            if self.full:
                self.dropped = True
            else:
                self.shown.append(p)

    @property
    def complete(self) -> bool:
        """True when every problem found is shown."""
        return not self.dropped and self.bad_rows <= len({r for p in self.shown for r in p.rows})


def _passes(rows: Sequence[Mapping[str, object]], value_columns: Sequence[str]) -> bool:
    """Whether ``rows`` pass the run's own checks (the one place the rules live)."""
    try:
        validate_rows(rows, value_columns)
    except InputError:
        return False
    return True


def _why_account(v: object) -> str:
    if v is None:
        return "is empty; every row needs an account"
    if isinstance(v, str):
        return f"{v!r} is not an integer account"
    return f"{v} does not fit a 64-bit integer"


def _why_month(v: object) -> str:
    if v is None:
        return "is empty; every row needs a month"
    return f"{v!r} is not a month of the form 'YYYY-MM' (e.g. '2024-06')"


def _why_value(v: object) -> str:
    """Why a value the checks refused does not fit DECIMAL(18,2) (the checks decided; this explains)."""
    if isinstance(v, str):
        return f"{v!r} is not a number"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return f"float {v!r} is not a finite number"
        return (f"float {v!r} is not exactly one DECIMAL({VALUE_PRECISION},{VALUE_SCALE}) value and would have to "
                "be rounded; write the column as decimal(18,2) or as text")
    if isinstance(v, Decimal) and not v.is_finite():
        return f"{v} is not a finite number"
    exp = v.as_tuple().exponent if isinstance(v, Decimal) else 0
    if isinstance(exp, int) and exp < -VALUE_SCALE:
        return f"{v} has more than {VALUE_SCALE} decimal places"
    return (f"{v} does not fit DECIMAL({VALUE_PRECISION},{VALUE_SCALE}) (at most "
            f"{VALUE_PRECISION - VALUE_SCALE} digits before the decimal point)")


def _diagnose(row: Mapping[str, Any], value_columns: Sequence[str]) -> list[tuple[str, str]]:
    """(column, why) of every cell of a refused row: each cell is checked alone by the run's checks."""
    bid = row["backfill_id"]
    found = []
    if not _passes([{"backfill_id": bid, "acct": row["acct"], "backfill_month": _GOOD_MONTH}], []):
        found.append(("acct", _why_account(row["acct"])))
    if not _passes([{"backfill_id": bid, "acct": _GOOD_ACCT, "backfill_month": row["backfill_month"]}], []):
        found.append(("backfill_month", _why_month(row["backfill_month"])))
    for col in value_columns:
        cell = {"backfill_id": bid, "acct": _GOOD_ACCT, "backfill_month": _GOOD_MONTH, col: row[col]}
        if not _passes([cell], [col]):
            found.append((col, _why_value(row[col])))
    return found or [("", "does not pass the staging checks")]


@dataclass(frozen=True)
class _Context:
    """What every batch of one source is checked and built with."""

    backfill_id: str
    converters: Mapping[str, Converter]
    value_columns: tuple[str, ...]
    schema: pa.Schema
    created_at: datetime


def _batch_problems(cols: Mapping[str, list[Any]], rows: Sequence[Mapping[str, Any]], ctx: _Context,
                    budget: int) -> dict[int, list[tuple[str, str]]]:
    """{index in batch: [(column, why)]} of the bad rows of one batch.

    Only the first ``budget`` refused rows are taken apart cell by cell (the error shows
    only a few); the rest are counted, so a wholly bad file fails fast.
    """
    bad: dict[int, list[tuple[str, str]]] = {}
    for i, v in enumerate(cols.get("backfill_id", ())):
        if v != ctx.backfill_id:
            bad[i] = [("backfill_id", f"{v!r} is not the --backfill-id {ctx.backfill_id!r}")]
    if _passes(rows, ctx.value_columns):  # one call per batch when the batch is good
        return bad
    for i, row in enumerate(rows):
        if not _passes([row], ctx.value_columns):
            found = bad.setdefault(i, [])
            if budget > 0:
                found.extend(_diagnose(row, ctx.value_columns))
                budget -= 1
    return bad


def _check_batch(batch: pa.RecordBatch, first_row: int, ctx: _Context,
                 findings: _Findings) -> tuple[pa.RecordBatch | None, pa.Table]:
    """Staging rows of one batch (None once any row of the source is bad) and the keys of its good rows.

    The keys (acct, backfill_month, row) are kept for the duplicate checks across batches.
    """
    import pyarrow as pa

    cols = {name: conv(_decoded(batch.column(name))) for name, conv in ctx.converters.items()}
    names = [*KEY_COLUMNS, *ctx.value_columns]
    rows = [{"backfill_id": ctx.backfill_id, **dict(zip(names, vals, strict=True))}
            for vals in zip(*(cols[n] for n in names), strict=True)]
    bad = _batch_problems(cols, rows, ctx, SHOWN_PROBLEMS - len(findings.shown))
    findings.add((Problem((first_row + i,), (c,) if c else (), why)
                  for i in sorted(bad) for c, why in bad[i]), len(bad))
    good = [i for i in range(len(rows)) if i not in bad]
    keys = pa.table({"acct": pa.array([cols["acct"][i] for i in good], pa.int64()),
                     "backfill_month": pa.array([cols["backfill_month"][i] for i in good], pa.string()),
                     "row": pa.array([first_row + i for i in good], pa.int64())})
    out = _staging_batch(cols, len(rows), ctx) if findings.bad_rows == 0 else None
    return out, keys


def _staging_batch(cols: Mapping[str, list[Any]], n: int, ctx: _Context) -> pa.RecordBatch:
    """One batch in the staging table's Arrow schema, built column by column."""
    import pyarrow as pa

    fixed = {"backfill_id": ctx.backfill_id, "created_at": ctx.created_at, "status": StagingStatus.PENDING.value}
    arrays = []
    for f in ctx.schema:
        if f.name in fixed:
            arrays.append(pa.repeat(pa.scalar(fixed[f.name], f.type), n))
        elif f.name in cols and f.name != "backfill_id":
            arrays.append(pa.array(cols[f.name], f.type))
        else:  # a value column the source does not have, processed_at, error
            arrays.append(pa.nulls(n, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=ctx.schema)


def _slices(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(first 1-based row, batch of at most BATCH_ROWS rows) over the whole source."""
    first = 1
    for batch in batches:
        for offset in range(0, batch.num_rows, BATCH_ROWS):
            part = batch.slice(offset, BATCH_ROWS)
            yield first, part
            first += part.num_rows


def _duplicates(keys: pa.Table) -> tuple[list[Problem], int]:
    """The first (acct, month) pairs that more than one row of the source holds (the run would
    refuse them), and how many rows are involved in all."""
    import pyarrow.compute as pc

    groups = keys.group_by(list(KEY_COLUMNS)).aggregate([("row", "count"), ("row", "min"), ("row", "list")])
    groups = groups.filter(pc.greater(groups["row_count"], 1)).sort_by("row_min")
    problems = [Problem(tuple(sorted(g["row_list"])), KEY_COLUMNS,
                        f"acct {g['acct']} and month {g['backfill_month']!r} appear in {g['row_count']} rows; "
                        "keep one row per account and month")
                for g in groups.slice(0, SHOWN_PROBLEMS).to_pylist()]
    return problems, pc.sum(groups["row_count"]).as_py() or 0


# ------------------------------------------------------------------------ staging


@dataclass(frozen=True)
class Staged:
    """A checked source, ready to append: the staging rows and the key of each row."""

    backfill_id: str
    label: str
    arrow: pa.Table
    keys: pa.Table
    value_columns: tuple[str, ...]
    absent_columns: tuple[str, ...]
    csv_path: Path | None = None


def check_source(cfg: Config, backfill_id: str, source: Source, now: datetime | None = None) -> Staged:
    """Check every row of ``source`` with the run's rules and build the staging rows; InputError if any is bad.

    Nothing is written here: a bad source fails before the staging table is even loaded.
    """
    import pyarrow as pa
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    bid = check_backfill_id(backfill_id)
    configured = [hc.value_column for hc in cfg.tables.history_columns]
    converters = _converters(source.schema, configured, source.label)
    present = tuple(c for c in configured if c in converters)
    ctx = _Context(bid, converters, present, schema_to_pyarrow(staging_schema(cfg), include_field_ids=False),
                   now or datetime.now(timezone.utc))
    findings, out, keys = _Findings(), [], []
    for first, batch in _slices(source.batches):
        staged, batch_keys = _check_batch(batch, first, ctx, findings)
        out += [staged] if staged is not None else []
        keys.append(batch_keys)
    all_keys = pa.concat_tables(keys) if keys else pa.table({"acct": pa.array([], pa.int64()),
                                                             "backfill_month": pa.array([], pa.string()),
                                                             "row": pa.array([], pa.int64())})
    findings.add(*_duplicates(all_keys))
    if findings.bad_rows:
        raise _rows_error(source.label, findings, source.csv_path)
    if all_keys.num_rows == 0:
        raise InputError(f"{source.label} has no data rows; nothing was written")
    return Staged(bid, source.label, pa.Table.from_batches(out, schema=ctx.schema), all_keys, present,
                  tuple(c for c in configured if c not in present), source.csv_path)


def _where(p: Problem, lines: Mapping[int, int]) -> str:
    """'row 3 (line 4), column 'x'' / 'rows 3, 9, columns ...' of one problem."""
    rows = [f"{r} (line {lines[r]})" if r in lines else str(r) for r in p.rows[:5]]
    more = f" and {len(p.rows) - 5} more" if len(p.rows) > 5 else ""
    text = ("row " if len(p.rows) == 1 else "rows ") + ", ".join(rows) + more
    if p.columns:
        text += (", column " if len(p.columns) == 1 else ", columns ") + ", ".join(repr(c) for c in p.columns)
    return text


def _csv_lines(path: Path, rows: set[int]) -> dict[int, int]:
    """{data row: line it starts on} for the rows an error names (a second pass, only on error)."""
    if not rows:
        return {}
    last, out = max(rows), {}
    for row, line, _ in _csv_records(path):
        if row in rows:
            out[row] = line
        if row >= last:
            break
    return out


def _rows_error(label: str, findings: _Findings, csv_path: Path | None) -> InputError:
    """One error for the whole source, capped so that a wholly bad file stays readable."""
    named = {r for p in findings.shown for r in p.rows[:5]}
    lines = _csv_lines(csv_path, named) if csv_path is not None else {}
    body = "\n  ".join(f"{_where(p, lines)}: {p.reason}" for p in findings.shown)
    counted = "the first data row after the header" if csv_path is not None else "the first row"
    tail = "" if findings.complete else f"\n  ... only the first {len(findings.shown)} problems are shown"
    return InputError(f"{label}: {findings.bad_rows} row(s) cannot be staged; nothing was written "
                      f"(row 1 is {counted}):\n  {body}{tail}")


def _pending_keys(staging: Table, backfill_id: str) -> tuple[int | None, pa.Table | None]:
    """(snapshot id, acct and month of the id's pending rows) of the staging table's current snapshot."""
    from pyiceberg.expressions import And

    snap = staging.current_snapshot()
    if snap is None:
        return None, None
    flt = And(equal("backfill_id", backfill_id), equal("status", StagingStatus.PENDING.value))
    scan = staging.scan(row_filter=flt, selected_fields=KEY_COLUMNS, snapshot_id=snap.snapshot_id)
    return snap.snapshot_id, scan.to_arrow()


def _already_pending(staged: Staged, pending: pa.Table, staging_name: str) -> tuple[list[Problem], int]:
    """The first rows whose (acct, month) is already pending under the same id (the run would
    refuse both), and how many there are."""
    if pending.num_rows == 0:
        return [], 0
    # pyiceberg reads strings as large_string; a join needs the keys' own types
    known = pending.select(list(KEY_COLUMNS)).cast(staged.keys.select(list(KEY_COLUMNS)).schema)
    hits = staged.keys.join(known.group_by(list(KEY_COLUMNS)).aggregate([]),
                            keys=list(KEY_COLUMNS), join_type="inner").sort_by("row")
    problems = [Problem((h["row"],), KEY_COLUMNS,
                        f"acct {h['acct']} and month {h['backfill_month']!r} are already pending in "
                        f"{staging_name} under backfill id {staged.backfill_id!r}; stage it under another "
                        "id or remove that row first")
                for h in hits.slice(0, SHOWN_PROBLEMS).to_pylist()]
    return problems, hits.num_rows


@dataclass(frozen=True)
class StageResult:
    """What was staged (or, with ``dry_run``, would be)."""

    backfill_id: str
    label: str
    staging_table: str
    rows: int
    months: tuple[str, ...]
    accounts: int
    value_columns: tuple[str, ...]
    absent_columns: tuple[str, ...]
    snapshot_id: int | None
    dry_run: bool = False

    def lines(self) -> list[str]:
        verb = "would stage (dry run, nothing written)" if self.dry_run else "staged"
        span = f"{self.months[0]}..{self.months[-1]}" if len(self.months) > 1 else self.months[0]
        out = [f"{verb} {self.rows} row(s) from {self.label} into {self.staging_table} "
               f"for backfill id {self.backfill_id} (status pending)",
               f"  months:   {len(self.months)} ({span})",
               f"  accounts: {self.accounts}",
               f"  values:   {', '.join(self.value_columns)}"]
        if self.absent_columns:
            out.append(f"  not in the source (NULL, left untouched): {', '.join(self.absent_columns)}")
        if not self.dry_run:
            out.append(f"  snapshot: {self.snapshot_id}")
        return out


def write_staged(staging: Table, staged: Staged, staging_name: str, dry_run: bool = False) -> StageResult:
    """Append ``staged`` to ``staging`` in one commit, after checking it against the id's pending rows.

    The check reads the snapshot the append builds on; a stage of the same id committed in
    between is not seen here, but the run's own checks still refuse the duplicate.
    """
    import pyarrow.compute as pc

    read_snapshot, pending = _pending_keys(staging, staged.backfill_id)
    clashes, count = _already_pending(staged, pending, staging_name) if pending is not None else ([], 0)
    if count:
        findings = _Findings()
        findings.add(clashes, count)
        raise _rows_error(staged.label, findings, staged.csv_path)
    snapshot_id = None
    if not dry_run:
        staging.append(staged.arrow, snapshot_properties={KEY_STAGED_ID: staged.backfill_id,
                                                          KEY_STAGED_FROM: staged.label})
        snap = staging.current_snapshot()
        snapshot_id = snap.snapshot_id if snap else None
        if snap is not None and snap.parent_snapshot_id != read_snapshot:
            log.warning("another commit reached %s while staging; `backfill` checks duplicates again", staging_name)
    months = tuple(sorted(pc.unique(staged.keys["backfill_month"]).to_pylist()))
    return StageResult(staged.backfill_id, staged.label, staging_name, staged.arrow.num_rows, months,
                       pc.count_distinct(staged.keys["acct"]).as_py(), staged.value_columns,
                       staged.absent_columns, snapshot_id, dry_run)


def stage(catalog: Catalog, cfg: Config, staged: Staged, dry_run: bool = False) -> StageResult:
    """Load the staging table (its schema checked against the configuration) and write ``staged``."""
    staging = tables.load(catalog, cfg, "staging")
    return write_staged(staging, staged, tables.display_name(cfg, "staging"), dry_run)
