import pytest

from backfill.core.months import add_months, format_month, is_month, month_offset, month_range, parse_month
from backfill.errors import InputError


@pytest.mark.parametrize("bad", ["2023-13", "2023-1", "23-12", "", None, "2023-00", "2023/12",
                                 " 2023-12", "2023-12 ", "2023-12-01", 202312, "abcd-ef"])
def test_malformed_months_are_rejected_with_the_value(bad):
    assert not is_month(bad)
    with pytest.raises(InputError, match="month"):
        parse_month(bad)


def test_round_trip_and_arithmetic():
    for m in ["0001-01", "1999-12", "2023-12", "2024-01"]:
        assert format_month(parse_month(m)) == m
    assert add_months("2023-12", 1) == "2024-01"
    assert add_months("2024-01", -13) == "2022-12"
    assert month_offset("2024-05", "2023-12") == 5
    assert month_offset("2023-12", "2024-05") == -5
    assert month_range("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert month_range("2024-02", "2024-01") == []
