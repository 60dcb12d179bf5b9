"""Progress display: a bar on a terminal, plain periodic lines otherwise, nothing when quiet."""

from __future__ import annotations

import io
import re

import pytest

from ekdcli.engine.progress import EpochProgress, format_seconds, resolve_mode


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("progress", "quiet", "is_main", "tty", "mode"),
    [
        ("auto", False, True, True, "bar"),
        ("auto", False, True, False, "lines"),
        ("auto", True, True, True, "none"),  # --quiet
        ("auto", False, False, True, "none"),  # ranks other than 0
        ("lines", False, True, True, "lines"),
        ("bar", False, True, False, "bar"),
        ("none", False, True, True, "none"),
    ],
)
def test_mode_follows_the_terminal_and_quiet(
    progress: str, quiet: bool, is_main: bool, tty: bool, mode: str
) -> None:
    stream = Terminal() if tty else io.StringIO()
    assert resolve_mode(progress, quiet, is_main, stream) == mode


def test_plain_lines_report_progress_loss_rate_and_eta() -> None:
    stream = io.StringIO()
    progress = EpochProgress(2, 5, 10, "lines", stream=stream, line_every_s=0.0, min_interval_s=0.0)
    for done in range(1, 11):
        progress.update(done, 64, 0.5)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 9  # every step but the last (the epoch line follows it)
    pattern = r"epoch 2/5 +(\d+)%  loss 0\.5000  \d+ img/s  eta \d+:\d\d:\d\d"
    assert [int(re.fullmatch(pattern, line).group(1)) for line in lines] == list(range(10, 100, 10))


def test_lines_are_rate_limited() -> None:
    stream = io.StringIO()
    progress = EpochProgress(1, 1, 100, "lines", stream=stream)  # every 10% but at most every 5 s
    for done in range(1, 100):
        progress.update(done, 8, None)
    assert stream.getvalue() == ""  # a fast epoch prints no intermediate lines


def test_bar_shows_throughput_and_loss() -> None:
    stream = Terminal()
    progress = EpochProgress(1, 3, 4, "bar", stream=stream)
    for done in range(1, 5):
        progress.update(done, 32, 1.25)
    progress.bar.refresh()  # tqdm rate-limits its redraws: draw the current state now
    text = stream.getvalue()
    progress.close()
    assert re.search(r"epoch 1/3: 100%.*4/4.*img/s=\d+, loss=1\.2500", text), text


def test_quiet_mode_prints_nothing() -> None:
    stream = io.StringIO()
    progress = EpochProgress(1, 1, 3, "none", stream=stream, line_every_s=0.0, min_interval_s=0.0)
    for done in range(1, 4):
        progress.update(done, 8, 0.1)
    progress.close()
    assert stream.getvalue() == ""


def test_format_seconds() -> None:
    assert format_seconds(3725.9) == "1:02:05" and format_seconds(-3) == "0:00:00"
