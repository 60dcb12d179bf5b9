"""Progress on stderr: a tqdm bar on a terminal, plain periodic lines with an ETA otherwise.

Training epochs (:class:`EpochProgress`) and single passes over data such as scoring,
evaluation, prediction and hashing a checkpoint (:class:`PassProgress`) look the same.
stdout stays free for ``--json`` results.  Only the main rank reports.  The engine's messages
(:func:`echo`) are kept for the run's ``run.log``; the progress bars and lines are not.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ekdcli.util import transcript

# Plain lines: every ~10 % but not more often than MIN_INTERVAL_S, and at least every LINE_EVERY_S.
LINE_EVERY_S = 30.0
MIN_INTERVAL_S = 5.0


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def echo(message: str, stream: TextIO | None = None, show: bool = True) -> None:
    """Print a message for people (unless ``show`` is false) and keep it for ``run.log``."""
    transcript.record(message)
    if show:
        print(message, file=stream or sys.stderr, flush=True)


def _line_due(
    fraction: float, last_fraction: float, since: float, min_interval_s: float, every_s: float
) -> bool:
    """Every ~10 % (but not more often than every few seconds), and at least every ``every_s``."""
    return (fraction - last_fraction >= 0.1 - 1e-9 and since >= min_interval_s) or since >= every_s


def _eta(elapsed: float, done: float, total: float) -> str:
    return format_seconds(elapsed / max(done, 1e-9) * max(total - done, 0))


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
        due = _line_due(fraction, self.last_line_fraction, since, self.min_interval_s, self.line_every_s)
        if due and batches_done < self.total:
            done = max(batches_done - self.start_batch, 1)
            eta = _eta(now - self.start, done, self.total - self.start_batch)
            # the whole run: this epoch's rest and the epochs after it, at this epoch's pace
            later = (self.epochs - self.epoch) * self.total
            run_eta = _eta(now - self.start, done, self.total - self.start_batch + later)
            loss_text = f"  loss {loss:.4f}" if loss is not None else ""
            print(  # progress: not kept in run.log
                f"epoch {self.epoch}/{self.epochs} {100 * fraction:3.0f}%{loss_text}  {rate:.0f} img/s  "
                f"eta {eta}" + (f" (run {run_eta})" if later else ""),
                file=self.stream,
                flush=True,
            )
            self.last_line_time, self.last_line_fraction = now, fraction

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class PassProgress:
    """Progress of one pass over ``total`` items (images, or bytes with ``unit="B"``), e.g.
    ``scoring cifar100 train  40%  2,310 img/s  eta 0:00:13``; a fast pass prints nothing."""

    def __init__(
        self,
        desc: str,
        total: int,
        mode: str,
        unit: str = "img",
        stream: TextIO | None = None,
        line_every_s: float | None = None,
        min_interval_s: float | None = None,
    ) -> None:
        self.desc, self.total, self.mode, self.unit = desc, total, mode, unit
        self.stream = stream or sys.stderr
        self.line_every_s = LINE_EVERY_S if line_every_s is None else line_every_s
        self.min_interval_s = MIN_INTERVAL_S if min_interval_s is None else min_interval_s
        self.start = self.last_line_time = time.perf_counter()
        self.done = 0
        self.last_line_fraction = 0.0
        self.bar: Any = None
        if mode == "bar":
            from tqdm import tqdm

            scale = unit == "B"
            self.bar = tqdm(
                total=total, desc=desc, file=self.stream, leave=False, dynamic_ncols=True,
                unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000,
            )  # fmt: skip

    def __enter__(self) -> PassProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, items: int) -> None:
        """``items`` more done since the last call."""
        self.done += items
        if self.bar is not None:
            self.bar.update(items)  # tqdm rate-limits the redraws
        if self.mode != "lines" or self.done >= self.total:
            return
        now = time.perf_counter()
        fraction = self.done / max(self.total, 1)
        since = now - self.last_line_time
        if _line_due(fraction, self.last_line_fraction, since, self.min_interval_s, self.line_every_s):
            elapsed = now - self.start
            rate = self._rate(self.done / max(elapsed, 1e-9))
            print(  # progress: not kept in run.log
                f"{self.desc} {100 * fraction:3.0f}%  {rate}  eta {_eta(elapsed, self.done, self.total)}",
                file=self.stream,
                flush=True,
            )
            self.last_line_time, self.last_line_fraction = now, fraction

    def _rate(self, per_second: float) -> str:
        if self.unit == "B":
            return f"{per_second / 2**20:.1f} MiB/s"
        return f"{per_second:,.0f} {self.unit}/s"

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
