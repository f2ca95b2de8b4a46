from datetime import datetime, timezone

import pytest

from backfill.core.results import PartitionOutcome
from backfill.core.states import AttemptStatus

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _outcome(status):
    return PartitionOutcome(partition="2024-01", status=status, attempt=1, entries=1, started_at=T0, completed_at=T0)


def test_a_status_given_as_its_string_becomes_the_member():
    o = _outcome("already_committed")
    assert o.status is AttemptStatus.ALREADY_COMMITTED and o.ok
    assert o.audit_row("bf-1", "run-A")["status"] == "already_committed"
    assert _outcome(AttemptStatus.FAILED).status is AttemptStatus.FAILED


def test_an_unknown_status_string_fails_at_construction():
    with pytest.raises(ValueError):
        _outcome("done")
