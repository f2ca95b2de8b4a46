"""The one retry policy, as data, and the tenacity arguments every retry site derives from it.

Retrying is safe everywhere because the update rule is idempotent and a commit that
already landed is found in the snapshot history before anything is redone. Which
failures are retried is decided by exception *type* (``BackfillError.retryable``, or the
named types a site passes), never by message text; how often and how long to wait is
this policy, whose numbers come from ``[run]`` in the configuration.

Two shapes of budget, both from the same policy:

- *attempts* (``retries`` extra attempts after the first, exponential backoff with
  jitter): partition MERGEs and staging updates, where each attempt is real work;
- *ride-out* (keep trying for ``ride_out_seconds``): bookkeeping calls (audit appends,
  checkpoint calls) that must survive a catalog or actor restart in the middle of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tenacity

#: What a site retries: named exception types, or a predicate that decides by type
#: (for example ``cluster.java_errors.is_retryable``, which reads Java exception classes).
RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def _retry_condition(retry_on: RetryOn) -> tenacity.retry_base:
    if isinstance(retry_on, tuple):
        return tenacity.retry_if_exception_type(retry_on)
    return tenacity.retry_if_exception(retry_on)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to retry.

    Attributes:
        retries: extra attempts after the first for work (a partition batch, a staging update).
        backoff_seconds: base of the exponential backoff (also its jitter scale).
        max_backoff_seconds: longest wait between two attempts.
        ride_out_seconds: how long bookkeeping calls keep retrying an unreachable service.
    """

    retries: int = 3
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 60.0
    ride_out_seconds: float = 300.0

    def wait(self) -> tenacity.wait.wait_base:
        """Exponential backoff with jitter: parallel writers that conflicted do not retry in step."""
        return tenacity.wait_exponential_jitter(multiplier=self.backoff_seconds, max=self.max_backoff_seconds,
                                                jitter=self.backoff_seconds / 2)

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait before the attempt after ``failed_attempt`` (1-based)."""
        state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = failed_attempt
        return float(self.wait()(state))

    def should_retry(self, failed_attempt: int, retryable: bool) -> bool:
        """True when a failure of this kind is retried after attempt ``failed_attempt``."""
        return retryable and failed_attempt <= self.retries

    def attempts(self, retry_on: RetryOn) -> dict[str, Any]:
        """``tenacity.Retrying`` arguments for work: ``retries`` extra attempts on ``retry_on``."""
        return {"retry": _retry_condition(retry_on),
                "stop": tenacity.stop_after_attempt(self.retries + 1),
                "wait": self.wait(), "reraise": True}

    def ride_out(self, retry_on: RetryOn) -> dict[str, Any]:
        """``tenacity.Retrying`` arguments for bookkeeping: keep trying for ``ride_out_seconds``."""
        return {"retry": _retry_condition(retry_on),
                "stop": tenacity.stop_after_delay(self.ride_out_seconds),
                "wait": tenacity.wait_exponential(multiplier=0.2, max=min(5.0, self.max_backoff_seconds)),
                "reraise": True}
