"""StopSignal: the first SIGTERM/SIGINT only sets the flag, a second reaches the handler
that was there before, re-arming survives a library replacing the handler (ray.init
does), and disarming puts back what was found."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from backfill.ops.stop_signal import StopSignal


@pytest.fixture
def recorded_sigterm():
    """A recording SIGTERM handler in place of the default for the test; restored after."""
    seen: list[int] = []
    saved = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGTERM, saved)


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # Python runs handlers between bytecodes of the main thread


def test_first_signal_sets_the_flag_and_is_not_passed_on(recorded_sigterm):
    with StopSignal() as stop:
        assert not stop.is_set()
        _deliver(signal.SIGTERM)
        assert stop.is_set()
    assert recorded_sigterm == []


def test_second_signal_reaches_the_previous_handler(recorded_sigterm):
    with StopSignal() as stop:
        _deliver(signal.SIGTERM)
        _deliver(signal.SIGTERM)
        assert stop.is_set()
        assert recorded_sigterm == [signal.SIGTERM]
        # after passing one on, the run's handler is gone: later signals go straight there
        assert signal.getsignal(signal.SIGTERM) is not stop._handle


def test_disarm_restores_the_handlers_found(recorded_sigterm):
    before_int = signal.getsignal(signal.SIGINT)
    before_term = signal.getsignal(signal.SIGTERM)
    with StopSignal():
        assert signal.getsignal(signal.SIGTERM) is not before_term
    assert signal.getsignal(signal.SIGTERM) is before_term
    assert signal.getsignal(signal.SIGINT) is before_int
    _deliver(signal.SIGTERM)
    assert recorded_sigterm == [signal.SIGTERM]


def test_rearm_takes_the_handler_back_from_a_library_and_restores_the_library_s(recorded_sigterm):
    library_saw: list[int] = []

    def library_handler(signum, _frame):  # what ray.init installs: exit at once
        library_saw.append(signum)

    with StopSignal() as stop:
        signal.signal(signal.SIGTERM, library_handler)
        _deliver(signal.SIGTERM)  # before re-arming the library's handler has it
        assert library_saw == [signal.SIGTERM] and not stop.is_set()
        stop.arm()
        _deliver(signal.SIGTERM)
        assert stop.is_set() and library_saw == [signal.SIGTERM]
    # the process keeps the handler it would have had without the run
    assert signal.getsignal(signal.SIGTERM) is library_handler


def test_sigint_is_a_stop_too():
    with StopSignal() as stop:
        _deliver(signal.SIGINT)
        assert stop.is_set()


def test_outside_the_main_thread_arming_is_a_no_op(recorded_sigterm):
    handler_before = signal.getsignal(signal.SIGTERM)
    flags: list[bool] = []

    def body():
        with StopSignal() as stop:
            flags.append(stop.is_set())
    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert flags == [False]
    assert signal.getsignal(signal.SIGTERM) is handler_before
