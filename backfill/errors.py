"""One exception hierarchy for the whole tool.

Policy: every error a user can see names the offending thing (row, value, option,
table) and says what to do. Errors are split by what the caller does next:
``InputError`` and ``ConfigError`` mean "fix the input, nothing was written";
``TransientError`` means "retrying is safe" (the update rule is idempotent);
``PermanentError`` means "retrying will not help". All of them cross Ray actor
boundaries, so they keep their constructor arguments in ``args`` and stay picklable.
"""

from __future__ import annotations


class BackfillError(Exception):
    """Root of every error this tool raises on purpose."""

    exit_code = 1


class ConfigError(BackfillError):
    """A configuration value or command-line option is invalid; nothing was written."""

    exit_code = 2


class InputError(BackfillError):
    """Staged input breaks the contract (bad month, NULL account, duplicate entry...); nothing was written."""

    exit_code = 3


class TableError(BackfillError):
    """A table is missing or its schema does not match the configuration; nothing was written."""

    exit_code = 4


class EnvironmentProblem(BackfillError):
    """Java, the Iceberg runtime jar, Ray or the catalog service cannot be used; the message says how to fix it."""

    exit_code = 5


class CatalogUnsafeError(ConfigError):
    """The catalog cannot take concurrent commits safely for the requested parallelism."""


class TransientError(BackfillError):
    """A failure that may pass on retry (commit conflict, lost executor, dead actor); retrying is safe."""


class PermanentError(BackfillError):
    """A failure that retrying cannot fix (bad SQL, schema mismatch)."""


class RunFailed(BackfillError):
    """At least one partition failed after every retry; committed partitions stay committed and a rerun resumes."""

    exit_code = 6
