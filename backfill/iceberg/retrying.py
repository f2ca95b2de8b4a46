"""Which pyiceberg failures a retry can help, and one way to ride them out.

The catalog service restarts (a metastore pod rescheduled, a network blip) and commits
conflict with other writers; both pass. Decided by exception type, never by message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying

from backfill.core.retry import RetryPolicy

T = TypeVar("T")


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """The catalog being unreachable (refused, reset, timed out)."""
    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, EOFError)
    try:  # present with the hive extra; other catalogs raise the builtin errors above
        from thrift.transport.TTransport import TTransportException
    except ImportError:
        return errors
    return errors + (TTransportException,)


def commit_retryable_errors() -> tuple[type[BaseException], ...]:
    """Commit conflicts, and the catalog being unreachable."""
    from pyiceberg.exceptions import CommitFailedException

    return (CommitFailedException, *unreachable_errors())


def ride_out(policy: RetryPolicy, errors: tuple[type[BaseException], ...], fn: Callable[[], T]) -> T:
    """``fn()``, retried on ``errors`` for the policy's ride-out time (it must be idempotent)."""
    for attempt in Retrying(**policy.ride_out(errors)):
        with attempt:
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover
