"""The pool's slot accounting (no Ray needed: actors are plain objects here)."""

from __future__ import annotations

from actors.pool import PartitionPool
from backfill.retry import RetryPolicy


def _pool(max_parallel, slots):
    made = []

    def make(n):
        made.append(f"a{n}")
        return f"a{n}", f"actor-{n}"

    return PartitionPool(make, lambda *a: None, max_parallel, RetryPolicy(), lambda o: None,
                         slots_per_actor=slots), made


def test_one_slot_per_actor_is_one_actor_per_partition():
    pool, made = _pool(3, 1)
    assert [pool.acquire() for _ in range(4)] == ["a1", "a2", "a3", None]
    pool.release("a2")
    assert pool.acquire() == "a2" and made == ["a1", "a2", "a3"]


def test_slots_share_an_actor_under_the_total_cap():
    pool, made = _pool(4, 2)
    # new actors first (spread sessions), then second slots, never more than 4 at once
    assert [pool.acquire() for _ in range(5)] == ["a1", "a2", "a1", "a2", None]
    assert made == ["a1", "a2"]
    pool.release("a1")
    assert pool.acquire() == "a1"


def test_an_idle_actor_is_reused_before_a_busy_one_gets_a_second_attempt():
    pool, made = _pool(3, 2)   # at most 2 actors
    assert [pool.acquire(), pool.acquire()] == ["a1", "a2"]
    pool.release("a1")
    assert pool.acquire() == "a1"
    assert pool.acquire() in ("a1", "a2") and made == ["a1", "a2"]
    assert pool.acquire() is None  # 3 running


def test_a_dropped_actor_frees_its_slots_and_is_replaced():
    import ray  # noqa: F401  (_drop_actor calls ray.kill; a plain object makes it raise, which is ignored)

    pool, made = _pool(2, 2)
    assert [pool.acquire(), pool.acquire()] == ["a1", "a1"]
    pool._drop_actor("a1")
    pool._drop_actor("a1")            # the second failed attempt of the same actor: no-op
    assert pool.acquire() == "a2" and made == ["a1", "a2"]
    pool.release("a1")                # a late release of the dead actor changes nothing
    assert pool.acquire() == "a2" and pool.acquire() is None
