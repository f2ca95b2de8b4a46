from decimal import Decimal

import pytest

from backfill.core.identifiers import (
    check_backfill_id,
    decimal_literal,
    month_literal,
    quote_identifier,
    split_table_name,
    string_literal,
)
from backfill.errors import ConfigError, InputError

HOSTILE = ["a'b", "a;DROP TABLE x", "a--", "a/*", "`a`", "a b", "a.b", "", "1abc", "a\nb", "é"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_identifiers_are_rejected(name):
    with pytest.raises(ConfigError):
        quote_identifier(name)


@pytest.mark.parametrize("value", ["x'; DROP TABLE t; --", "a b", "", "a`b", "a/*b*/", "-lead", "a\\b"])
def test_hostile_backfill_ids_are_rejected(value):
    with pytest.raises(InputError, match="backfill id"):
        check_backfill_id(value)


def test_good_values_are_quoted():
    assert quote_identifier("balance_history") == "`balance_history`"
    assert check_backfill_id("bf-2024.001:x") == "bf-2024.001:x"
    assert string_literal("bf-1") == "'bf-1'"
    assert month_literal("2023-12") == "'2023-12'"
    with pytest.raises(InputError):
        month_literal("2023-12' OR '1'='1")
    with pytest.raises(InputError):
        string_literal("it's")


def test_table_names():
    assert split_table_name("db.t") == ("db", "t")
    assert split_table_name("c.db.t") == ("c", "db", "t")
    for bad in ["t", "a.b.c.d", "db.t;x", "db.`t`", None]:
        with pytest.raises(ConfigError):
            split_table_name(bad)


def test_decimal_literal_checks_fit():
    assert decimal_literal(Decimal("12.50")) == "CAST('12.50' AS DECIMAL(18,2))"
    with pytest.raises(InputError):
        decimal_literal(Decimal("1.234"))
    with pytest.raises(InputError):
        decimal_literal(Decimal("12345678901234567.00"))
