"""Row filters for pyiceberg scans and deletes, built so the type checker can follow them.

pyiceberg's predicates are pydantic models: at runtime ``EqualTo("col", value)`` works,
but the constructor a type checker sees is the one pydantic derives from the fields
(``term=`` an unbound term, ``value=`` a bound literal), so the short form cannot be
checked. These build the same predicates through that declared form, and every value
reaches the filter as an Iceberg literal (plain data, never text to be parsed).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression

#: Python types of the values filtered on here: months, ids and statuses, accounts.
_Value = TypeVar("_Value", str, int)


def equal(column: str, value: _Value) -> BooleanExpression:
    """``column = value``."""
    from pyiceberg.expressions import EqualTo, Reference
    from pyiceberg.expressions.literals import literal

    return EqualTo(term=Reference(column), value=literal(value))


def one_of(column: str, values: Iterable[_Value]) -> BooleanExpression:
    """``column IN values``; pyiceberg folds one value into ``=`` and none into false."""
    from pyiceberg.expressions import In, Reference
    from pyiceberg.expressions.literals import literal

    return In(term=Reference(column), values={literal(v) for v in values})


def less_than(column: str, value: _Value) -> BooleanExpression:
    """``column < value``; a string value is converted to the column's type when bound."""
    from pyiceberg.expressions import LessThan, Reference
    from pyiceberg.expressions.literals import literal

    return LessThan(term=Reference(column), value=literal(value))


def is_null(column: str) -> BooleanExpression:
    """``column IS NULL``."""
    from pyiceberg.expressions import IsNull, Reference

    return IsNull(term=Reference(column))
