"""A run's progress on a terminal: event lines scroll, one live line with a bar is redrawn under them.

When the output is not a terminal (a pipe, a file, ``ray job logs``) nothing is redrawn:
events are plain lines and the live status a plain line every few seconds, so a log
reads top to bottom.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

from backfill.ops.progress import LineReporter, LiveStatus, Reporter

BAR_WIDTH = 20


class TerminalReporter:
    """Redraws one status line (bar, counts, ETA, what runs) below the event lines."""

    def __init__(self, stream: TextIO, indent: str = "") -> None:
        self._stream = stream
        self._indent = indent
        self._live = ""

    def line(self, text: str) -> None:
        # the live line is not redrawn under an event: what it showed may be over (the event
        # may be that MERGE's commit); the next poll, seconds away, draws the current state
        self.end()
        print(self._indent + text, file=self._stream, flush=True)

    def end(self) -> None:
        """The run is over: the live line goes, so what is printed next starts on a clean line."""
        self._clear()
        self._live = ""
        self._stream.flush()

    def live(self, status: LiveStatus) -> None:
        filled = round(BAR_WIDTH * status.done / status.total) if status.total else BAR_WIDTH
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self._live = f"{self._indent}[{bar}] {status.text()}"
        self._clear()
        self._draw()

    def _clear(self) -> None:
        if self._live:
            self._stream.write("\r\033[K")

    def _draw(self) -> None:
        if self._live:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self._stream.write(self._live[:width])
            self._stream.flush()


def reporter_for(stream: TextIO | None = None, indent: str = "") -> Reporter:
    """A TerminalReporter on a terminal, plain lines otherwise (each starting with ``indent``)."""
    out = stream or sys.stdout
    if out.isatty():
        return TerminalReporter(out, indent)
    return LineReporter(lambda text: print(indent + text, file=out, flush=True))
