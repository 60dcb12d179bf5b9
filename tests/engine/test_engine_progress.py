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
    pattern = r"epoch 2/5 +(\d+)%  loss 0\.5000  \d+ img/s  eta \d+:\d\d:\d\d \(run \d+:\d\d:\d\d\)"
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


# ------------------------------------------------------------------ single passes (score, evaluate)
def test_pass_lines_report_share_rate_and_eta() -> None:
    from ekdcli.engine.progress import PassProgress

    stream = io.StringIO()
    with PassProgress(
        "scoring cifar100 train", 1000, "lines", stream=stream, line_every_s=0, min_interval_s=0
    ) as p:
        for _ in range(10):
            p.update(100)
    lines = stream.getvalue().splitlines()
    pattern = r"scoring cifar100 train +(\d+)%  [\d,]+ img/s  eta \d+:\d\d:\d\d"
    # every 10 % but the last (the pass's result follows it)
    assert [int(re.fullmatch(pattern, line).group(1)) for line in lines] == list(range(10, 100, 10))


def test_pass_bar_and_bytes() -> None:
    from ekdcli.engine.progress import PassProgress

    stream = Terminal()
    with PassProgress("hashing ckpt.pth", 3 * 2**20, "bar", unit="B", stream=stream) as p:
        for _ in range(3):
            p.update(2**20)
        p.bar.refresh()
        text = stream.getvalue()
    assert re.search(r"hashing ckpt\.pth: 100%.*3\.00M/3\.00M .*B/s", text), text


def test_a_fast_pass_and_a_quiet_one_print_nothing() -> None:
    from ekdcli.engine.progress import PassProgress

    for mode, kwargs in (("lines", {}), ("none", {"line_every_s": 0, "min_interval_s": 0})):
        stream = io.StringIO()
        with PassProgress("evaluating r1 test", 100, mode, stream=stream, **kwargs) as p:
            for _ in range(100):
                p.update(1)
        assert stream.getvalue() == ""


def test_prediction_reports_progress_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    """predict(desc=...) shows its pass; lines (not a bar) when stderr is not a terminal."""
    import torch

    from ekdcli.engine import EngineOptions, Runtime, predict, progress
    from ekdcli.sdk.contracts import InMemoryDataset

    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    images = torch.zeros(40, 3, 8, 8, dtype=torch.uint8)
    labels = torch.arange(40) % 2
    data = InMemoryDataset("toy", images, labels, images[:4], labels[:4], ["a", "b"], (0.5,) * 3, (0.5,) * 3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    runtime = Runtime(EngineOptions(device="cpu", precision="fp32"))
    logits, _ = predict(model, data, "train", runtime, batch_size=4, desc="scoring toy train")
    assert logits.shape == (40, 2)
    shown = [line for line in stream.getvalue().splitlines() if line.startswith("scoring toy train")]
    assert len(shown) == 9 and shown[0].split()[3] == "10%"
    quiet = Runtime(EngineOptions(device="cpu", precision="fp32", quiet=True))
    stream.truncate(0)
    predict(model, data, "train", quiet, batch_size=4, desc="scoring toy train")
    assert stream.getvalue() == ""


def test_the_eta_covers_the_epoch_and_the_whole_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import ekdcli.engine.progress as module

    clock = iter([0.0, 4.0, 4.0])  # start, then one batch per second: 4 of 10 batches after 4 s
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    progress = EpochProgress(2, 5, 10, "lines", stream=stream, line_every_s=0.0, min_interval_s=0.0)
    progress.update(4, 64, None)
    # this epoch: 6 batches left at 1 s each; the run: those and 3 more epochs of 10 batches
    assert stream.getvalue().split("eta ", 1)[1].strip() == "0:00:06 (run 0:00:36)"
