"""cluster.java_errors: Spark failures are classified by Java exception class, never by text.

No JVM here: small fakes mimic the two shapes a Spark failure has in Python, py4j's
``Py4JJavaError`` (``java_exception`` with ``getClass().getName()`` / ``getCause()``) and
pyspark's captured exceptions (``_origin``). The real-stack check is in
tests/cluster/test_spark_session.py.
"""

from __future__ import annotations

import pytest

from backfill.errors import BackfillError, InputError, PermanentError, TransientError
from cluster.java_errors import MAX_CAUSES, error_for, is_retryable, java_class_chain

captured = pytest.importorskip("pyspark.errors.exceptions.captured")

SPARK_EXCEPTION = "org.apache.spark.SparkException"
COMMIT_FAILED = "org.apache.iceberg.exceptions.CommitFailedException"
ANALYSIS = "org.apache.spark.sql.AnalysisException"
EXTENDED_ANALYSIS = "org.apache.spark.sql.catalyst.ExtendedAnalysisException"


class FakeJavaClass:
    """A java.lang.Class proxy: ``getName()`` and ``getSuperclass()``."""

    def __init__(self, name: str, parent: FakeJavaClass | None = None) -> None:
        self._name, self._parent = name, parent

    def getName(self) -> str:  # noqa: N802 - Java's spelling
        return self._name

    def getSuperclass(self) -> FakeJavaClass | None:  # noqa: N802
        return self._parent


EXCEPTION_CLASS = FakeJavaClass("java.lang.Exception", FakeJavaClass("java.lang.Throwable"))


class FakeThrowable:
    """A java.lang.Throwable proxy: ``getClass()`` and ``getCause()``."""

    def __init__(self, java_class: FakeJavaClass | str, cause: FakeThrowable | None = None) -> None:
        if isinstance(java_class, str):
            java_class = FakeJavaClass(java_class, EXCEPTION_CLASS)
        self._class, self.cause = java_class, cause

    def getClass(self) -> FakeJavaClass:  # noqa: N802
        return self._class

    def getCause(self) -> FakeThrowable | None:  # noqa: N802
        return self.cause


class FakePy4JJavaError(Exception):
    """The shape of py4j.protocol.Py4JJavaError: ``java_exception`` is the throwable."""

    def __init__(self, java_exception: FakeThrowable, msg: str = "An error occurred while calling o42.sql.") -> None:
        super().__init__(msg, java_exception)
        self.java_exception = java_exception

    def __str__(self) -> str:
        return str(self.args[0])


class FakeAnalysisException(captured.AnalysisException):
    """A pyspark captured AnalysisException built without a JVM, carrying ``_origin``."""

    def __init__(self, origin: FakeThrowable | None, desc: str = "[TABLE_OR_VIEW_NOT_FOUND]",
                 cause: captured.CapturedException | None = None) -> None:
        Exception.__init__(self, desc)
        self.desc, self.stackTrace, self.cause, self._origin = desc, "", cause, origin

    def __str__(self) -> str:  # the real one asks the JVM for a config value
        return self.desc


def chain(*names: str) -> FakeThrowable:
    """A throwable of class ``names[0]`` caused by ``names[1]``... (outermost first)."""
    throwable = None
    for name in reversed(names):
        throwable = FakeThrowable(name, throwable)
    assert throwable is not None
    return throwable


def test_commit_conflict_inside_a_spark_exception_is_transient():
    exc = FakePy4JJavaError(chain(SPARK_EXCEPTION, COMMIT_FAILED))
    assert java_class_chain(exc) == [SPARK_EXCEPTION, COMMIT_FAILED]
    error = error_for(exc, "MERGE of 2024-01")
    assert type(error) is TransientError
    assert str(error).startswith("MERGE of 2024-01 failed: FakePy4JJavaError: An error occurred")
    assert is_retryable(exc)


def test_analysis_exception_is_permanent():
    exc = FakeAnalysisException(chain(ANALYSIS))
    assert java_class_chain(exc) == [ANALYSIS]
    assert type(error_for(exc, "statement 1/3")) is PermanentError
    assert not is_retryable(exc)


def test_a_subclass_of_a_permanent_class_is_permanent():
    """Spark 3.5 throws ExtendedAnalysisException for a missing table: an AnalysisException."""
    analysis = FakeJavaClass(ANALYSIS, EXCEPTION_CLASS)
    exc = FakeAnalysisException(FakeThrowable(FakeJavaClass(EXTENDED_ANALYSIS, analysis)))
    assert java_class_chain(exc) == [EXTENDED_ANALYSIS, ANALYSIS]
    assert type(error_for(exc, "statement")) is PermanentError


def test_unknown_java_class_is_transient():
    exc = FakePy4JJavaError(chain("com.example.SomethingOdd"))
    assert type(error_for(exc, "statement")) is TransientError


def test_unknown_exception_without_origin_uses_its_converted_cause():
    """pyspark's UnknownException has no ``_origin`` but keeps the converted Java cause."""
    inner = FakeAnalysisException(chain(ANALYSIS))
    outer = FakeAnalysisException(None, desc="java.lang.RuntimeException: wrapped", cause=inner)
    assert java_class_chain(outer) == [ANALYSIS]


def test_the_text_of_a_python_error_does_not_make_it_transient():
    exc = ValueError("org.apache.iceberg.exceptions.CommitFailedException: looks like a conflict")
    assert java_class_chain(exc) == []
    assert type(error_for(exc, "statement")) is PermanentError
    assert not is_retryable(exc)


@pytest.mark.parametrize("exc", [ConnectionRefusedError("refused"), TimeoutError("slow"), EOFError()])
def test_broken_connections_on_the_python_side_are_transient(exc):
    assert type(error_for(exc, "statement")) is TransientError


def test_other_python_errors_are_permanent():
    assert type(error_for(KeyError("month"), "statement")) is PermanentError


def test_a_backfill_error_passes_through_unchanged():
    error = InputError("month 2024-13 is not a month")
    assert error_for(error, "statement", "; hint") is error
    assert isinstance(error_for(TransientError("x"), "s"), BackfillError)
    assert is_retryable(TransientError("x")) and not is_retryable(error)


def test_text_is_cut_to_4000_characters_then_the_hint():
    hint = "; earlier statements were committed"
    error = error_for(FakePy4JJavaError(chain(ANALYSIS), msg="x" * 10_000), "statement 2/5", hint)
    text = str(error)
    assert text.startswith("statement 2/5 failed: FakePy4JJavaError: xxx")
    assert len(text) == 4000 + len(hint)
    assert text.endswith("x" + hint)


def test_a_looping_cause_chain_is_bounded():
    first = FakeThrowable(SPARK_EXCEPTION)
    first.cause = FakeThrowable("com.example.Loop", first)
    assert len(java_class_chain(FakePy4JJavaError(first))) == MAX_CAUSES


class DeadThrowable(FakeThrowable):
    """The JVM died: every call into it raises, as py4j does."""

    def getCause(self) -> FakeThrowable | None:  # noqa: N802
        raise ConnectionRefusedError("Answer from Java side is empty")


class DeadPy4JJavaError(FakePy4JJavaError):
    def __str__(self) -> str:  # Py4JJavaError.__str__ asks the JVM for the message
        raise ConnectionRefusedError("Answer from Java side is empty")


def test_a_dead_jvm_never_raises_and_keeps_what_was_read():
    exc = DeadPy4JJavaError(DeadThrowable(COMMIT_FAILED))
    assert java_class_chain(exc) == [COMMIT_FAILED]
    error = error_for(exc, "statement")
    assert type(error) is TransientError
    assert "An error occurred while calling o42.sql." in str(error)
    assert "the JVM did not answer" in str(error)


def test_a_lost_py4j_gateway_is_transient():
    """The session's JVM died (py4j cannot reach it): a new actor starts a new one."""
    from py4j.protocol import Py4JNetworkError

    assert isinstance(error_for(Py4JNetworkError("Answer from Java side is empty"), "MERGE"), TransientError)
