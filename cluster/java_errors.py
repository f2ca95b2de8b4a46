"""Classify a failed Spark statement as transient or permanent by exception CLASS, never text.

A Spark statement fails in Python with one of two shapes, both carrying the Java throwable:

- py4j's ``Py4JJavaError``, whose ``java_exception`` is the throwable (a py4j JavaObject);
- pyspark 3.5's converted exceptions (``pyspark.errors.exceptions.captured.CapturedException``
  subclasses: AnalysisException, ParseException, IllegalArgumentException...), which keep
  the throwable in ``_origin``; an ``UnknownException`` has none but keeps its converted
  Java cause in ``cause``.

The fully qualified class names of that throwable and its cause chain go to
:func:`backfill.errors.error_class_for_java`, which holds the class-name sets. Each class
comes with its superclasses (up to the generic ``java.lang`` bases), because Spark throws
subclasses of the classes those sets name: a missing table in Spark 3.5 is an
``org.apache.spark.sql.catalyst.ExtendedAnalysisException``, a subclass of
``org.apache.spark.sql.AnalysisException``, and must count as one. Messages are
never read to decide: a message can quote anything (a table named after an exception, a
user value), and Spark and Iceberg reword them between versions; class names are their API.

Reading a Java object is a call into the JVM, which may be dead (the executor or driver
that failed may be why we are here): every such read is guarded, and classification uses
whatever was collected before the gateway stopped answering.
"""

from __future__ import annotations

import sys
from typing import Any

from backfill.errors import BackfillError, PermanentError, TransientError, error_class_for_java

#: Longest cause chain (and superclass chain) read; getCause() can loop (A caused by B caused by A).
MAX_CAUSES = 20
#: Longest failure text kept before the hint (a Java stack trace can run to megabytes).
MAX_TEXT = 4000
_CAPTURED_MODULE = "pyspark.errors.exceptions.captured"
_PY4J_PROTOCOL_MODULE = "py4j.protocol"
#: Superclasses that say nothing about a failure; the walk up a class's parents stops there.
_GENERIC_BASES = frozenset({"java.lang.Object", "java.lang.Throwable", "java.lang.Exception",
                            "java.lang.RuntimeException", "java.lang.Error"})

#: Python-side failures (no Java throwable) that retrying can fix. This is the one place
#: that decides it. They are the ways a connection to another process or service breaks
#: (ConnectionError covers refused, reset and broken pipe; socket.timeout is TimeoutError;
#: a peer hanging up mid-answer is EOFError): the catalog service restarting or a worker
#: moving passes on the next attempt. Every other Python exception (TypeError, KeyError,
#: ValueError...) is a bug or bad input in our own code and fails the same way again, so
#: it is permanent; retrying it would only burn the retry budget and hide the cause.
TRANSIENT_PYTHON_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, EOFError)


def java_class_chain(exc: BaseException) -> list[str]:
    """Java class names of ``exc``'s throwable and its causes, outermost first.

    Each throwable's own class comes first, then its superclasses up to (without) the
    generic ``java.lang`` bases; e.g. ``[ExtendedAnalysisException, AnalysisException]``
    (fully qualified) for a missing table, ``[SparkException, CommitFailedException]``
    for a commit conflict inside a Spark job.

    ``[]`` when ``exc`` carries no Java throwable (a plain Python exception). Never raises:
    if the JVM stops answering part-way, the names read so far are returned.
    """
    try:
        throwable = _java_throwable(exc)
    except Exception:  # noqa: BLE001 - reading exception attributes must not raise
        return []
    return _cause_chain(throwable) if throwable is not None else []


def error_for(exc: BaseException, what: str, hint: str = "") -> BackfillError:
    """The BackfillError to raise for ``exc``, a failure of ``what`` (e.g. "statement 2/5").

    A BackfillError is returned unchanged. A Java failure becomes TransientError or
    PermanentError by the class names of its cause chain; a Python-side failure by
    :data:`TRANSIENT_PYTHON_ERRORS`. The text is ``"<what> failed: <Type>: <message>"`` cut
    to :data:`MAX_TEXT` characters, then ``hint`` (what to do about it).
    """
    if isinstance(exc, BackfillError):
        return exc
    text = f"{what} failed: {type(exc).__name__}: {_message(exc)}"[:MAX_TEXT] + hint
    chain = java_class_chain(exc)
    if chain:
        return error_class_for_java(chain)(text)
    return python_error_class(exc)(text)


def is_retryable(exc: BaseException) -> bool:
    """Whether running the work that raised ``exc`` again can succeed."""
    return type(error_for(exc, "")).retryable


def python_error_class(exc: BaseException) -> type[BackfillError]:
    """TransientError for the Python exceptions in :data:`TRANSIENT_PYTHON_ERRORS` and for
    py4j's lost gateway (the session's JVM died: a new actor starts a new one), else PermanentError."""
    if isinstance(exc, TRANSIENT_PYTHON_ERRORS):
        return TransientError
    network = _loaded_class(_PY4J_PROTOCOL_MODULE, "Py4JNetworkError")
    return TransientError if network is not None and isinstance(exc, network) else PermanentError


def _java_throwable(exc: BaseException) -> Any | None:
    """The Java throwable ``exc`` carries, or None."""
    # Py4JJavaError, recognised by shape: its ``java_exception`` is the throwable.
    java = getattr(exc, "java_exception", None)
    if java is not None:
        return java
    captured = _captured_exception_class()
    current: Any = exc
    for _ in range(MAX_CAUSES):
        if captured is None or not isinstance(current, captured):
            return None
        origin = getattr(current, "_origin", None)
        if origin is not None:
            return origin
        current = getattr(current, "cause", None)  # UnknownException: a converted Java cause
    return None


def _captured_exception_class() -> type[BaseException] | None:
    """pyspark's CapturedException if pyspark's error module is loaded, else None."""
    return _loaded_class(_CAPTURED_MODULE, "CapturedException")


def _loaded_class(module_name: str, class_name: str) -> type[BaseException] | None:
    """An exception class of ``module_name`` if that module is loaded, else None.

    An exception of a module that was never imported cannot be an instance of its classes,
    so a plain Python failure is classified without importing pyspark or py4j.
    """
    module = sys.modules.get(module_name)
    found = getattr(module, class_name, None) if module is not None else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _cause_chain(throwable: Any) -> list[str]:
    """Class names of ``throwable`` and its ``getCause()`` chain (bounded), each with its superclasses."""
    names: list[str] = []
    current = throwable
    try:
        for _ in range(MAX_CAUSES):
            if current is None:
                break
            _add_class_names(current.getClass(), names)
            current = current.getCause()
    except Exception:  # noqa: BLE001 - a dead JVM or gateway: keep what was read
        pass
    return names


def _add_class_names(java_class: Any, names: list[str]) -> None:
    """Append ``java_class``'s name, then its superclasses' up to a generic java.lang base."""
    names.append(str(java_class.getName()))
    parent = java_class.getSuperclass()
    for _ in range(MAX_CAUSES):
        name = str(parent.getName()) if parent is not None else None
        if name is None or name in _GENERIC_BASES:
            return
        names.append(name)
        parent = parent.getSuperclass()


def _message(exc: BaseException) -> str:
    """``str(exc)``; a Py4JJavaError's asks the JVM, so fall back to its Python-side args."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - the gateway is gone; say what we still know
        first = exc.args[0] if exc.args else ""
        return f"{first} (Java message unavailable: the JVM did not answer)"
