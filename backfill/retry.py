"""Retry policy as data: which failures are transient, and how long to wait between attempts.

Retrying a partition is safe because the update rule is idempotent and a commit that
already landed is found in the snapshot history before anything is redone. What is
*not* retried is anything that will fail the same way again (bad SQL, schema mismatch,
bad input): retrying those only hides the cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tenacity

#: Error text of failures that fail again identically.
_PERMANENT = re.compile(
    r"AnalysisException|ParseException|UNRESOLVED_COLUMN|DATATYPE_MISMATCH|"
    r"NoSuchTableException|TABLE_OR_VIEW_NOT_FOUND|IllegalArgumentException|"
    r"CAST_INVALID_INPUT|DUPLICATED_MAP_KEY|Duplicate map key|SCHEMA_NOT_FOUND|"
    r"InputError|TableError|ConfigError"
)
#: Error text of failures known to pass on retry (checked first).
_TRANSIENT = re.compile(
    r"CommitFailedException|ValidationException|Found conflicting files|"
    r"CommitStateUnknownException|ExecutorLostFailure|FetchFailed|RayActorError|"
    r"ActorDiedError|ActorUnavailableError|Connection refused|TTransportException|"
    r"SocketTimeoutException|Broken pipe|WorkerCrashedError|OwnerDiedError"
)


def is_transient(error_text: str) -> bool:
    """Classify an error message: True when retrying may succeed.

    Unknown failures count as transient (bounded by the retry count) except those whose
    text matches a permanent pattern.
    """
    if _TRANSIENT.search(error_text):
        return True
    return not _PERMANENT.search(error_text)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and backoff for one partition; ``retries`` extra attempts after the first."""

    retries: int = 3
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 60.0

    def _wait(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(multiplier=self.backoff_seconds, max=self.max_backoff_seconds,
                                                jitter=self.backoff_seconds / 2)

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait before the attempt after ``failed_attempt`` (1-based)."""
        state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = failed_attempt
        return float(self._wait()(state))

    def should_retry(self, failed_attempt: int, transient: bool) -> bool:
        return transient and failed_attempt <= self.retries


def statement_error(exc: BaseException, what: str, hint: str) -> Exception:
    """A Transient or Permanent error for a failed Spark statement, with what to do."""
    from backfill.errors import PermanentError, TransientError

    text = f"{what} failed: {type(exc).__name__}: {exc}"[:4000] + hint
    return (TransientError if is_transient(str(exc)) else PermanentError)(text)
