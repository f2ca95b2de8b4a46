"""Graceful stop on SIGTERM/SIGINT (what `ray job stop` and Ctrl+C send).

The first signal only sets a flag: no new partition starts, attempts already running
finish and are recorded, and the run exits 7 ("rerun to resume"). A second signal is
handed to whatever handler was there before, so an operator can still force the issue.

Why a context manager, armed before planning and re-armed after ``ray.init``: a stop can
arrive at any moment of a run, including while it plans or connects to Ray, and
``ray.init`` replaces the SIGTERM handler with one that exits 15 at once. Without the
re-arm, a stop during start-up killed the driver between writes instead of stopping it.
On exit the handlers found are put back, so a process that runs the Python API (the Ray
head) is not left ignoring SIGTERM after the run.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Flag set by the first SIGTERM/SIGINT of a run; see the module docstring."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        """Count as stopped without a signal (e.g. one a library's handler consumed)."""
        self.event.set()

    def arm(self) -> StopSignal:
        """Install (or re-install, after a library replaced them) the run's handlers.

        Only the main thread may install handlers; elsewhere (a thread of the caller's
        own) the flag still works when set by the caller, it just is not tied to signals.
        """
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in SIGNALS:
            current = signal.getsignal(sig)
            if current != self._handle:
                self._previous[sig] = current
                signal.signal(sig, self._handle)
        return self

    def disarm(self) -> None:
        """Put back the handlers found when arming (the latest ones, e.g. Ray's)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        if not self.event.is_set():
            log.warning("signal %d received: no new partition will start; rerun to resume "
                        "(send it again to stop at once)", signum)
            self.set()
            return
        self.disarm()
        signal.raise_signal(signum)

    def __enter__(self) -> StopSignal:
        return self.arm()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.disarm()
