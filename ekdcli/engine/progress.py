"""Training progress on stderr: a tqdm bar on a terminal, plain periodic lines otherwise.

stdout stays free for ``--json`` results.  Only the main rank reports.  The engine's messages
(:func:`echo`) are kept for the run's ``run.log``; the progress bars and lines are not.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ekdcli.util import transcript


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def echo(message: str, stream: TextIO | None = None, show: bool = True) -> None:
    """Print a message for people (unless ``show`` is false) and keep it for ``run.log``."""
    transcript.record(message)
    if show:
        print(message, file=stream or sys.stderr, flush=True)


class EpochProgress:
    """Per-step progress of one epoch; ``mode`` is "bar", "lines" or "none" (see :func:`resolve_mode`)."""

    def __init__(
        self,
        epoch: int,
        epochs: int,
        total_batches: int,
        mode: str,
        start_batch: int = 0,
        stream: TextIO | None = None,
        line_every_s: float = 30.0,
        min_interval_s: float = 5.0,
    ) -> None:
        self.epoch, self.epochs, self.total = epoch, epochs, total_batches
        self.mode = mode
        self.stream = stream or sys.stderr
        self.line_every_s = line_every_s
        self.min_interval_s = min_interval_s
        self.start = time.perf_counter()
        self.start_batch = start_batch
        self.images = 0
        self.last_line_time = self.start
        self.last_line_fraction = start_batch / max(total_batches, 1)
        self.bar: Any = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_batches,
                initial=start_batch,
                desc=f"epoch {epoch}/{epochs}",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
                unit="batch",
            )

    def update(self, batches_done: int, images: int, loss: float | None) -> None:
        """``batches_done`` of this epoch so far, ``images`` seen since the last call."""
        self.images += images
        if self.mode == "none":
            return
        now = time.perf_counter()
        rate = self.images / max(now - self.start, 1e-9)
        if self.bar is not None:
            postfix = {"img/s": f"{rate:.0f}"}
            if loss is not None:
                postfix["loss"] = f"{loss:.4f}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(batches_done - self.bar.n)  # tqdm rate-limits the redraws
            return
        fraction = batches_done / max(self.total, 1)
        since = now - self.last_line_time
        # Every ~10 % (but not more often than every few seconds), and at least every 30 s.
        due = (fraction - self.last_line_fraction >= 0.1 and since >= self.min_interval_s) or (
            since >= self.line_every_s
        )
        if due and batches_done < self.total:
            done_here = max(batches_done - self.start_batch, 1)
            eta = (now - self.start) / done_here * (self.total - batches_done)
            loss_text = f"  loss {loss:.4f}" if loss is not None else ""
            print(  # progress: not kept in run.log
                f"epoch {self.epoch}/{self.epochs} {100 * fraction:3.0f}%{loss_text}  {rate:.0f} img/s  "
                f"eta {format_seconds(eta)}",
                file=self.stream,
                flush=True,
            )
            self.last_line_time, self.last_line_fraction = now, fraction

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def resolve_mode(progress: str, quiet: bool, is_main: bool, stream: TextIO | None = None) -> str:
    """ "bar" on a terminal when tqdm is installed, else "lines"; "none" when quiet or not rank 0."""
    if quiet or not is_main or progress == "none":
        return "none"
    if progress in ("bar", "auto"):
        stream = stream or sys.stderr
        try:
            import tqdm  # noqa: F401
        except ImportError:
            return "lines"
        if progress == "bar" or stream.isatty():
            return "bar"
    return "lines"
