"""What every training job keeps beside the engine's files: ``run.log`` (what the console said),
``curves.png``, and the run's experiment trackers (``--track``)."""

from __future__ import annotations

import functools
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ekdcli.config import Config
from ekdcli.jobs.console import Console
from ekdcli.sdk.plugins import registry
from ekdcli.store import rundir
from ekdcli.util import transcript
from ekdcli.util.errors import EkdError, UsageError

if TYPE_CHECKING:
    from ekdcli.engine import Runtime
    from ekdcli.engine.tracking import Tracking
    from ekdcli.sdk.contracts import Tracker

T = TypeVar("T")


def recorded(job: Callable[..., T]) -> Callable[..., T]:
    """Keep what ``job`` says (and the error that ends it) for the run directory it makes."""

    @functools.wraps(job)
    def run(*args: Any, **kwargs: Any) -> T:
        with transcript.recording():
            try:
                return job(*args, **kwargs)
            except EkdError as exc:
                transcript.record(f"error: {exc.message}")
                raise

    return run


def build_trackers(config: Config) -> list[tuple[str, Tracker]]:
    """The trackers ``config.track`` names, built now: an unknown name or a missing package is one
    sentence before any data is loaded."""
    names = config.track
    if not isinstance(names, list) or not all(isinstance(name, str) and name.strip() for name in names):
        raise UsageError(f'track must be a list of tracker names, e.g. ["tensorboard"], not {names!r}.')
    if names and config.tracking_uri:
        check_reachable(config.tracking_uri)
    trackers = registry("trackers")
    built: dict[str, Tracker] = {}
    for name in names:
        component = trackers.get(name)
        if component.name not in built:
            built[component.name] = component.build()
    return list(built.items())


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Refuse, in seconds and before any work, a tracking server nobody answers at (http/https)."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme not in ("http", "https"):
        return  # a file or database URI: its tracker says what is wrong with it
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if not parsed.hostname:
            raise ValueError("no host")
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else _reason(exc)
        raise UsageError(
            f"--tracking-uri {uri} is unreachable ({reason}); start the tracking server, fix the URI "
            "or drop --track."
        ) from exc


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@contextmanager
def run_record(
    config: Config, runtime: Runtime, run_dir: Path, trackers: list[tuple[str, Tracker]], command: str
) -> Iterator[Tracking]:
    """The trackers for :func:`ekdcli.engine.fit` (rank 0 only); when the block ends, however it
    ends, ``curves.png`` is drawn (when epochs were added: a refused resume changes nothing) and
    the trackers are finished with the run's files."""
    from ekdcli.engine.tracking import Tracking

    main = runtime.is_main
    tracking = Tracking(trackers if main else (), command, config.store_root(), config.tracking_uri)
    epochs_before = _metrics_text(run_dir)
    status = "failed"
    try:
        yield tracking
        status = "finished" if rundir.is_finished(run_dir) else "stopped"
    finally:
        if main:
            _finish(config, tracking, run_dir, status, _metrics_text(run_dir) != epochs_before)


def _metrics_text(run_dir: Path) -> str | None:
    path = run_dir / rundir.METRICS
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _finish(config: Config, tracking: Tracking, run_dir: Path, status: str, trained: bool) -> None:
    from ekdcli.jobs.curves import draw_run_curves

    try:
        if trained:
            draw_run_curves(run_dir)
    except Exception as exc:  # a figure must not hide how the run ended
        Console(quiet=config.quiet, json_mode=config.json).warn(
            f"could not draw {run_dir / rundir.CURVES} ({type(exc).__name__}: {exc})."
        )
    if tracking.started:
        summary = rundir.read_summary(run_dir) if status == "finished" else None
        tracking.finish(status, summary, artifacts(run_dir))


def artifacts(run_dir: Path) -> dict[str, Path]:
    """The files of a run worth keeping in a tracker, by role (only those that exist)."""
    files = {
        "best": run_dir / rundir.BEST,
        "last": run_dir / rundir.LAST,
        "config": run_dir / rundir.CONFIG,
        "summary": run_dir / rundir.SUMMARY,
        "curves": run_dir / rundir.CURVES,
        "log": run_dir / rundir.RUN_LOG,
    }
    return {role: path for role, path in files.items() if path.is_file()}
