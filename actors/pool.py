"""A concurrency cap over partition actors, in the manner of ``ray.util.ActorPool``.

Differences that matter here: actors are created lazily (a Spark start-up is paid only
when there is work for it), a dead actor is replaced instead of failing the run, and a
failed attempt is put back in the queue after the retry policy's backoff, so one slow
retry never blocks the other partitions. The unit of work is a :class:`MergeBatch` (one
MERGE over one or more partitions); outcomes are per partition.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from actors.named import end_actor
from backfill.core.plan import MergeBatch
from backfill.core.results import PartitionOutcome
from backfill.core.retry import RetryPolicy
from backfill.core.states import AttemptStatus

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    batch: MergeBatch
    attempt: int
    not_before: float


@dataclass
class _Running:
    """An attempt that was submitted: where it runs, what it is, since when."""

    actor: Any
    item: _Pending
    started: datetime


@dataclass(frozen=True)
class RunningAttempt:
    """An attempt in flight, as the pool's ``on_tick`` sees it (progress polling)."""

    actor: Any
    name: str | None
    batch: MergeBatch
    attempt: int
    started: datetime


class PartitionPool:
    """Keeps at most ``max_parallel`` partition actors busy until every task has an outcome.

    With ``slots_per_actor`` > 1 an actor runs that many partitions at once from threads
    of its one Spark session (executors and JVM shared: less memory than one session per
    partition); ``max_parallel`` still caps the partitions running in total.

    Args:
        make_actor: creates a new actor; called with a sequence number, returns
            ``(handle, name)`` (the name goes into the outcome of an attempt it died in).
        submit: starts ``batch`` (attempt n) on an actor and returns the ObjectRef of
            its list of partition outcomes.
        max_parallel: the cap.
        policy: which failures to retry and how long to wait.
        on_outcomes: called with the partition outcomes of every attempt (one MERGE) as
            soon as it ends, all of them at once (audit, checkpoint, progress: an ETA fed one
            partition at a time would read a 12-partition MERGE as 12 slow partitions); it
            runs before the next task is scheduled.
        should_stop: polled between waits; when True no new attempt starts.
        on_tick: called about twice a second with the attempts in flight (live progress).
    """

    def __init__(self, make_actor: Callable[[int], tuple[Any, str]], submit: Callable[[Any, MergeBatch, int], Any],
                 max_parallel: int, policy: RetryPolicy,
                 on_outcomes: Callable[[Sequence[PartitionOutcome]], None],
                 should_stop: Callable[[], bool] = lambda: False, slots_per_actor: int = 1,
                 on_tick: Callable[[list[RunningAttempt]], None] | None = None) -> None:
        self._make_actor = make_actor
        self._submit = submit
        self._max = max_parallel
        self._slots = max(1, slots_per_actor)
        self._max_actors = -(-max_parallel // self._slots)
        self._policy = policy
        self._on_outcomes = on_outcomes
        self._should_stop = should_stop
        self._on_tick = on_tick
        self._busy: dict[Any, int] = {}     # live actor -> attempts (or calls) running on it
        self._made = 0                      # actors ever created (names stay unique)
        self.actors: list[Any] = []         # every actor still alive, for shutdown
        self._names: dict[Any, str] = {}    # handle -> name

    def acquire(self) -> Any | None:
        """A slot on an actor, or None when ``max_parallel`` attempts already run.

        An idle actor is used first, then a new one while under the actor cap (spreading
        work over sessions and nodes), then a free slot beside a running attempt.
        """
        if sum(self._busy.values()) >= self._max:
            return None
        idle = [a for a, n in self._busy.items() if n == 0]
        if idle:
            actor = idle[0]
        elif len(self._busy) < self._max_actors:
            self._made += 1
            actor, name = self._make_actor(self._made)
            self._names[actor] = name
            self.actors.append(actor)
            self._busy[actor] = 0
        else:
            free = [a for a, n in self._busy.items() if n < self._slots]
            if not free:
                return None
            actor = min(free, key=self._busy.__getitem__)
        self._busy[actor] += 1
        return actor

    def release(self, actor: Any) -> None:
        """Give back a slot taken with :meth:`acquire`."""
        if actor in self._busy:
            self._busy[actor] -= 1

    def call(self, method: str, *args: Any, attempts: int = 3) -> Any:
        """``method(*args)`` on an idle (or new) actor; a dead actor is replaced and the
        call repeated (the calls made this way are idempotent)."""
        import ray
        from ray.exceptions import RayActorError

        for attempt in range(1, attempts + 1):
            actor = self.acquire()
            if actor is None:
                raise RuntimeError("no actor is free: call() is for use after run()")
            try:
                result = ray.get(getattr(actor, method).remote(*args))
            except RayActorError:
                self._drop_actor(actor)
                if attempt == attempts:
                    raise
                log.warning("actor died during %s; retrying on a new actor", method)
                continue
            self.release(actor)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop_actor(self, actor: Any) -> None:
        """Forget a dead actor (its other running attempts fail on their own) and make sure it is gone."""
        import ray

        if actor not in self._busy:
            return  # dropped already
        del self._busy[actor]
        self.actors.remove(actor)
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already dead
            pass

    def run(self, batches: list[MergeBatch]) -> list[PartitionOutcome]:
        """Apply ``batches`` until each has an outcome (or the run stops); every attempt's outcomes."""
        import ray

        queue: deque[_Pending] = deque(_Pending(b, 1, 0.0) for b in batches)
        active: dict[Any, _Running] = {}
        outcomes: list[PartitionOutcome] = []
        while queue or active:
            stopping = self._should_stop()
            if stopping and not active:
                break
            if not stopping:
                self._start_due(queue, active)
            if not active:
                # only delayed retries remain: sleep until the first is due
                queue = deque(sorted(queue, key=lambda p: p.not_before))
                time.sleep(max(0.0, min(1.0, queue[0].not_before - time.monotonic())))
                continue
            ready, _ = ray.wait(list(active), num_returns=1, timeout=0.5)
            if self._on_tick is not None:
                self._on_tick([RunningAttempt(r.actor, self._names.get(r.actor), r.item.batch, r.item.attempt,
                                              r.started) for r in active.values()])
            for ref in ready:
                running = active.pop(ref)
                got = self._collect(ref, running)
                outcomes += got
                self._on_outcomes(got)
                retry = self._maybe_retry(running.item, got)
                if retry is not None:
                    queue.append(retry)
        return outcomes

    def _start_due(self, queue: deque[_Pending], active: dict[Any, _Running]) -> None:
        """Submit the queue's due attempts, in order, while an actor slot is free."""
        now = time.monotonic()
        while queue and queue[0].not_before <= now:
            actor = self.acquire()
            if actor is None:
                break
            item = queue.popleft()
            ref = self._submit(actor, item.batch, item.attempt)
            active[ref] = _Running(actor, item, datetime.now(timezone.utc))

    def _collect(self, ref: Any, running: _Running) -> list[PartitionOutcome]:
        """The partition outcomes of a finished attempt; when its actor died, the actor is
        dropped and every partition of the batch failed (transient: another actor may succeed)."""
        import ray
        from ray.exceptions import RayError

        try:
            got = list(ray.get(ref))
        except RayError as exc:  # the actor died (killed, OOM, node lost)
            self._drop_actor(running.actor)
            text = f"{type(exc).__name__}: {exc}"
            failed_at = datetime.now(timezone.utc)
            return [PartitionOutcome(
                partition=t.partition, status=AttemptStatus.FAILED, attempt=running.item.attempt,
                entries=len(t.entries), started_at=running.started, completed_at=failed_at,
                error=text[:4000], transient=True, actor=self._names.get(running.actor),
            ) for t in running.item.batch.tasks]
        self.release(running.actor)
        return got

    def _maybe_retry(self, item: _Pending, got: list[PartitionOutcome]) -> _Pending | None:
        """The next attempt of ``item``'s unfinished partitions, if the policy retries its failure."""
        failed = [o for o in got if not o.ok]
        # one MERGE, one error: the batch is retried as a whole, minus what is done
        rest = item.batch.without(o.partition for o in got if o.ok)
        if not failed or rest is None or not self._policy.should_retry(
                item.attempt, all(o.transient for o in failed)):
            return None
        delay = self._policy.delay(item.attempt)
        log.warning("partitions %s: attempt %d failed, retrying in %.1f s",
                    ",".join(rest.partitions), item.attempt, delay)
        return _Pending(rest, item.attempt + 1, time.monotonic() + delay)

    def shutdown(self) -> None:
        for actor in list(self.actors):
            self._busy.pop(actor, None)
            self.actors.remove(actor)
            end_actor(actor)
