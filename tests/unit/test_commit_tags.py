"""The snapshot-summary tags that make resume exact, for one- and many-partition commits."""

import pytest

from backfill.core.commit_tags import (
    KEY_DIGEST,
    KEY_IDS,
    KEY_PARTITION,
    KEY_RUN,
    commit_properties,
    tagged_ids,
    tagged_partitions,
    tagged_work,
)
from backfill.errors import InputError

D1, D2 = "0" * 31 + "1", "f" * 32


def test_one_partition_commit_reads_as_before():
    props = commit_properties([("2024-05", D1)], "run-1", ["bf-2", "bf-1"])
    assert props == {KEY_PARTITION: "2024-05", KEY_DIGEST: D1, KEY_RUN: "run-1", KEY_IDS: "bf-1,bf-2"}
    assert tagged_work(props) == {"2024-05": D1}


def test_batch_commit_lists_each_partition_with_its_own_digest():
    props = commit_properties([("2024-06", D2), ("2024-05", D1)], "run-1", ["bf-1"])
    assert props[KEY_PARTITION] == "2024-05,2024-06" and props[KEY_DIGEST] == f"{D1},{D2}"
    assert tagged_work(props) == {"2024-05": D1, "2024-06": D2}
    assert tagged_partitions(props) == ["2024-05", "2024-06"]
    assert tagged_ids(props) == {"bf-1"}


@pytest.mark.parametrize("props", [
    None, {}, {"operation": "append"},
    {KEY_PARTITION: "2024-05,2024-06", KEY_DIGEST: D1},          # lists do not line up
    {KEY_PARTITION: "2024-05"},                                   # no digest
])
def test_untagged_or_inconsistent_summaries_claim_no_work(props):
    assert tagged_work(props) == {}


@pytest.mark.parametrize("work,error", [
    ([], ValueError),
    ([("2024-5", D1)], ValueError),
    ([("2024-05,2024-06", D1)], ValueError),
    ([("2024-05", "not hex")], ValueError),
    ([("2024-05", D1), ("2024-05", D2)], ValueError),
])
def test_bad_tags_are_refused(work, error):
    with pytest.raises(error):
        commit_properties(work, "run-1", ["bf-1"])


def test_hostile_backfill_id_is_refused():
    with pytest.raises(InputError):
        commit_properties([("2024-05", D1)], "run-1", ["bf-1,2024-06"])
