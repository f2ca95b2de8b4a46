"""One exception hierarchy for the whole tool, and every exit code.

Policy (after dagster's ``_core/errors.py``): every error a user can see names the
offending thing (row, value, option, table) and says what to do. A class answers the
two questions a caller has, so nothing is ever decided from message text:

- ``exit_code``: what the command line returns for it;
- ``retryable``: whether running the same work again can succeed. Retrying is safe for
  every error (the update rule is idempotent and a landed commit is found before
  anything is redone); it only *helps* for the transient ones.

Failures of other libraries (Java exceptions through Py4J, Ray actor deaths, catalog
commit conflicts) are mapped to these classes by type where they are caught
(``cluster.java_errors``, ``actors.pool``). Errors cross Ray actor boundaries, so they
keep their constructor arguments in ``args`` and stay picklable.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """Exit codes of every command; each means one thing."""

    OK = 0
    VERIFY_MISMATCH = 1
    CONFIG = 2
    INPUT = 3
    TABLE = 4
    ENVIRONMENT = 5
    RUN_FAILED = 6
    STOPPED = 7
    NOTHING_RECORDED = 8
    INTERRUPTED = 130


class BackfillError(Exception):
    """Root of every error this tool raises on purpose."""

    exit_code: ClassVar[ExitCode] = ExitCode.VERIFY_MISMATCH
    retryable: ClassVar[bool] = False


class ConfigError(BackfillError):
    """A configuration value or command-line option is invalid; nothing was written."""

    exit_code = ExitCode.CONFIG


class CatalogUnsafeError(ConfigError):
    """The catalog cannot take concurrent commits safely for the requested parallelism."""


class CheckpointUnwritable(ConfigError):
    """The run's checkpoint folder cannot be written (a table bucket, credentials scoped to
    tables, a read-only path); nothing was written. ``[run] checkpoint_dir`` names another."""


class InputError(BackfillError):
    """Staged input breaks the contract (bad month, NULL account, duplicate entry...); nothing was written."""

    exit_code = ExitCode.INPUT


class TableError(BackfillError):
    """A table is missing or its schema does not match the configuration; nothing was written."""

    exit_code = ExitCode.TABLE


class EnvironmentProblem(BackfillError):
    """Java, the Iceberg runtime jar, Ray or the catalog service cannot be used; the message says how to fix it."""

    exit_code = ExitCode.ENVIRONMENT


class TransientError(BackfillError):
    """A failure that may pass on retry (commit conflict, lost executor, dead actor); retrying is safe."""

    exit_code = ExitCode.RUN_FAILED
    retryable = True


class PermanentError(BackfillError):
    """A failure that retrying cannot fix (bad SQL, schema mismatch)."""

    exit_code = ExitCode.RUN_FAILED


class RunFailed(BackfillError):
    """At least one partition failed after every retry; committed partitions stay committed and a rerun resumes."""

    exit_code = ExitCode.RUN_FAILED


class RunStopped(BackfillError):
    """A stop signal (SIGTERM, SIGINT, ``ray job stop``) ended the run before every partition ran; a rerun resumes."""

    exit_code = ExitCode.STOPPED


class VerificationFailed(BackfillError):
    """Verification found cells that differ from what the backfill should have written."""

    exit_code = ExitCode.VERIFY_MISMATCH


class NothingRecorded(BackfillError):
    """The audit table holds no rows for the backfill id (and run id) asked about."""

    exit_code = ExitCode.NOTHING_RECORDED


#: Java exception classes (fully qualified) whose failure can pass on a fresh attempt:
#: commit races, lost executors and catalog connections. Checked on the whole cause chain.
TRANSIENT_JAVA_CLASSES: frozenset[str] = frozenset({
    "org.apache.iceberg.exceptions.CommitFailedException",
    "org.apache.iceberg.exceptions.CommitStateUnknownException",
    "org.apache.iceberg.exceptions.ValidationException",
    "org.apache.spark.shuffle.FetchFailedException",
    "org.apache.spark.ExecutorLostFailure",
    "org.apache.spark.scheduler.ExecutorLossReason",
    "org.apache.thrift.transport.TTransportException",
    "java.net.ConnectException",
    "java.net.SocketTimeoutException",
    "java.net.SocketException",
    "java.io.EOFException",
})

#: Java exception classes that fail the same way every time: bad SQL, missing tables,
#: bad values. Any other Java failure is taken as transient and bounded by the retry count.
PERMANENT_JAVA_CLASSES: frozenset[str] = frozenset({
    "org.apache.spark.sql.AnalysisException",
    "org.apache.spark.sql.catalyst.parser.ParseException",
    "org.apache.spark.sql.catalyst.analysis.NoSuchTableException",
    "org.apache.spark.sql.catalyst.analysis.NoSuchNamespaceException",
    "org.apache.iceberg.exceptions.NoSuchTableException",
    "org.apache.spark.SparkNumberFormatException",
    "org.apache.spark.SparkArithmeticException",
    "org.apache.spark.SparkRuntimeException",
    "org.apache.spark.SparkIllegalArgumentException",
    "java.lang.IllegalArgumentException",
    "java.lang.NumberFormatException",
})


def error_class_for_java(class_chain: list[str]) -> type[BackfillError]:
    """``TransientError`` or ``PermanentError`` for a Java failure, from the class names of
    its cause chain (outermost first): a transient cause anywhere wins (a commit conflict
    wrapped in a SparkException is still a commit conflict), then a permanent one; an
    unknown failure counts as transient, bounded by the retry budget."""
    if any(name in TRANSIENT_JAVA_CLASSES for name in class_chain):
        return TransientError
    if any(name in PERMANENT_JAVA_CLASSES for name in class_chain):
        return PermanentError
    return TransientError
