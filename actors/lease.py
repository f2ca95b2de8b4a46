"""Who may use a warm partition actor now: a lease with a time-to-live, held by one run.

A warm actor outlives the run that started it, so two drivers may find it at once, and a
driver may die holding it. The lease settles both without a coordinator: taking it is one
atomic call on the actor (its methods run in threads, hence the lock), a live driver
renews it every :data:`RENEW_SECONDS`, and a dead driver's lease simply runs out after
:data:`LEASE_SECONDS`. An attempt still running for a dead driver keeps the actor busy
until it ends, so a lease is never granted beside work in flight.

Pure state (the clock is passed in), so the rules are unit-tested without Ray.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

#: A lease not renewed for this long is free again (its driver is gone).
LEASE_SECONDS = 60.0
#: How often a driver renews the leases of the actors it holds.
RENEW_SECONDS = 10.0


@dataclass
class _Held:
    run_id: str
    until: float


class SessionLease:
    """The lease state of one warm actor, and how long it has been idle.

    Args:
        keep_warm_seconds: idle time after which the actor should end (0: never warm,
            the actor ends with its run as before).
        now: the clock reading at creation (the actor counts as used then).
    """

    def __init__(self, keep_warm_seconds: float, now: float) -> None:
        self.keep_warm_seconds = keep_warm_seconds
        self._lock = threading.Lock()
        self._held: _Held | None = None
        self._in_flight = 0
        self._last_used = now
        self._closing = False

    def take(self, run_id: str, now: float, ttl: float = LEASE_SECONDS) -> bool:
        """Lease the actor to ``run_id``; False while another live run holds it, work is in
        flight, or the actor is closing. Taking a lease one already holds renews it."""
        with self._lock:
            if self._closing:
                return False
            held = self._live(now)
            if held is not None and held.run_id != run_id:
                return False
            if held is None and self._in_flight:  # a gone driver's attempt still runs here
                return False
            self._held = _Held(run_id, now + ttl)
            self._last_used = now
            return True

    def renew(self, run_id: str, now: float, ttl: float = LEASE_SECONDS) -> bool:
        """Extend ``run_id``'s lease; False when it no longer holds it."""
        with self._lock:
            held = self._live(now)
            if held is None or held.run_id != run_id:
                return False
            held.until = now + ttl
            return True

    def release(self, run_id: str, now: float) -> None:
        """``run_id`` is done with the actor: it is idle from now on."""
        with self._lock:
            if self._held is not None and self._held.run_id == run_id:
                self._held = None
                self._last_used = now

    def holder(self, now: float) -> str | None:
        """The run holding a live lease, if any."""
        with self._lock:
            held = self._live(now)
            return held.run_id if held is not None else None

    def begin_work(self) -> None:
        with self._lock:
            self._in_flight += 1

    def end_work(self, now: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self._last_used = now

    def idle_seconds(self, now: float) -> float:
        """Seconds since the actor last worked or was released (0 while leased or busy)."""
        with self._lock:
            if self._in_flight or self._live(now) is not None:
                return 0.0
            return max(0.0, now - self._last_used)

    def should_close(self, now: float) -> bool:
        """True once (and then for good) when the actor has been idle past its keep-warm time;
        from then on no lease is granted, so closing never races a new run."""
        with self._lock:
            if self._closing:
                return True
            idle = not self._in_flight and self._live(now) is None
            if idle and self.keep_warm_seconds > 0 and now - self._last_used >= self.keep_warm_seconds:
                self._closing = True
            return self._closing

    def _live(self, now: float) -> _Held | None:
        """The current lease, dropping one that ran out (the idle time counts from its end)."""
        held = self._held
        if held is not None and held.until <= now:
            self._held = None
            self._last_used = max(self._last_used, held.until)
            return None
        return held
