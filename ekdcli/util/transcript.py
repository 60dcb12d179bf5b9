"""What the console showed, kept for a run directory's ``run.log``.

Jobs and the engine hand every line they print for people (not the progress bars) to
:func:`record`; each open :class:`Transcript` keeps it, and one that a run directory adopted
(:meth:`Transcript.attach`) passes the lines on to it.  Lines are kept whether or not ``--quiet``
printed them, so a run's log is complete however it was started (CLI, Python API, campaign).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Sink = Callable[[list[str]], object]  # receives every line so far, after each new one

_open: list[Transcript] = []


class Transcript:
    """The lines said since it was opened; ``attach(sink)`` sends them (and each later one) on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.sink: Sink | None = None

    def add(self, text: str) -> None:
        self.lines.extend(text.splitlines() or [""])
        if self.sink is not None:
            self.sink(self.lines)

    def attach(self, sink: Sink) -> None:
        self.sink = sink
        sink(self.lines)


@contextmanager
def recording(reuse: bool = False) -> Iterator[Transcript]:
    """Open a transcript for the duration of a job; ``reuse=True`` takes the innermost open one that
    no run directory adopted yet (the engine inside a job), else opens its own."""
    if reuse and _open and _open[-1].sink is None:
        yield _open[-1]
        return
    transcript = Transcript()
    _open.append(transcript)
    try:
        yield transcript
    finally:
        _open.remove(transcript)


def record(text: str) -> None:
    """Keep one printed message (it may span lines) in every open transcript."""
    for transcript in list(_open):
        transcript.add(text)
