"""The warm-session lease: one run at a time, a dead driver's lease runs out, nothing is
granted beside work in flight, and an idle actor closes for good after its keep-warm time."""

from __future__ import annotations

from actors.lease import LEASE_SECONDS, SessionLease


def test_one_run_at_a_time_and_the_holder_may_renew():
    lease = SessionLease(300, now=0)
    assert lease.take("r1", now=1)
    assert not lease.take("r2", now=2)
    assert lease.take("r1", now=3)  # taking again renews
    assert lease.renew("r1", now=4)
    assert not lease.renew("r2", now=4)
    assert lease.holder(now=5) == "r1"


def test_a_lease_not_renewed_runs_out_and_another_run_takes_it():
    lease = SessionLease(300, now=0)
    assert lease.take("dead-driver", now=0)
    assert not lease.take("r2", now=LEASE_SECONDS - 1)
    assert lease.take("r2", now=LEASE_SECONDS + 1)
    assert lease.holder(now=LEASE_SECONDS + 2) == "r2"
    assert not lease.renew("dead-driver", now=LEASE_SECONDS + 2)


def test_no_lease_beside_work_of_a_run_whose_lease_ran_out():
    lease = SessionLease(300, now=0)
    assert lease.take("r1", now=0)
    lease.begin_work()
    assert not lease.take("r2", now=LEASE_SECONDS + 5)  # r1's MERGE still runs
    lease.end_work(now=LEASE_SECONDS + 6)
    assert lease.take("r2", now=LEASE_SECONDS + 7)


def test_release_makes_it_free_and_idle_time_counts_from_then():
    lease = SessionLease(30, now=0)
    assert lease.take("r1", now=0)
    lease.release("r2", now=5)  # not the holder: nothing happens
    assert lease.holder(now=5) == "r1"
    lease.release("r1", now=10)
    assert lease.holder(now=10) is None
    assert lease.idle_seconds(now=25) == 15
    assert not lease.should_close(now=39)
    assert lease.should_close(now=40)


def test_closing_is_for_good_and_refuses_every_lease():
    lease = SessionLease(30, now=0)
    assert lease.should_close(now=31)
    assert not lease.take("r1", now=32)
    assert lease.should_close(now=33)


def test_a_busy_or_held_actor_never_closes_and_a_cold_one_never_does_either():
    lease = SessionLease(30, now=0)
    lease.begin_work()
    assert not lease.should_close(now=1000)
    lease.end_work(now=1000)
    assert lease.take("r1", now=1000)
    assert not lease.should_close(now=1000 + LEASE_SECONDS - 1)
    cold = SessionLease(0, now=0)
    assert not cold.should_close(now=10**6)


def test_an_expired_lease_counts_as_idle_from_its_end():
    lease = SessionLease(100, now=0)
    assert lease.take("dead", now=0)
    assert lease.idle_seconds(now=LEASE_SECONDS + 10) == 10
    assert not lease.should_close(now=LEASE_SECONDS + 99)
    assert lease.should_close(now=LEASE_SECONDS + 100)
