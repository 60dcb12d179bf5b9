"""Every run directory keeps run.log (the console without progress) and curves.png; evaluate --plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ekdcli.store import rundir

TINY = ("--epochs", "2", "--limit-train", "128", "--limit-test", "64")


def _run_dir(name: str) -> Path:
    return (Path("store") / "runs" / name).resolve()


@pytest.mark.slow
def test_run_log_is_what_the_console_showed_and_stays_complete_under_quiet(ekd) -> None:  # noqa: ANN001
    code, out, err = ekd("train", "--model", "tiny_cnn", *TINY, "--run-name", "shown")
    assert code == 0, err
    shown = (out + err).splitlines()
    log = (_run_dir("shown") / "run.log").read_text().splitlines()
    assert sorted(log) == sorted(shown)  # stdout and stderr interleave differently; the lines are the same
    assert log[0].startswith("ekd train: tiny_cnn on digits") and log[-1].startswith("done: best top-1 ")
    assert [line.split()[1] for line in log if line.startswith("epoch ")] == ["1/2", "2/2"]

    code, out, err = ekd(
        "train", "--model", "tiny_cnn", *TINY, "--run-name", "quiet", "--name", "other", "--quiet"
    )
    assert (code, out, err) == (0, "", "")
    quiet = (_run_dir("quiet") / "run.log").read_text().splitlines()
    same_shape = [
        line.split()[:2] for line in log if not line.startswith(("epoch", "done", "run dir", "2 epochs"))
    ]
    assert [
        line.split()[:2] for line in quiet if not line.startswith(("epoch", "done", "run dir", "2 epochs"))
    ] == same_shape
    records = rundir.read_metrics(_run_dir("quiet"))
    epochs = [line for line in quiet if line.startswith("epoch ")]
    assert [e.split("  ")[1] for e in epochs] == [f"loss {r['loss']:.4f}" for r in records]


def _figure_of(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The matplotlib figures ``save_figure`` receives, kept open for the test to read."""
    from ekdcli.method import figures

    kept: list[Any] = []
    real = figures.save_figure

    def keep(fig: Any, path: Any) -> Path:
        kept.append(fig)
        fig.savefig(path)
        return Path(path)

    monkeypatch.setattr(figures, "save_figure", keep)
    assert real is not keep
    return kept


def test_the_curves_are_loss_top1_in_percent_and_lr_per_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ekdcli.method.figures import training_curves

    kept = _figure_of(monkeypatch)
    records = [
        {"epoch": 1, "loss": 2.0, "test_loss": 2.5, "train_top1": 0.25, "test_top1": 0.5, "lr": 0.1},
        {"epoch": 2, "loss": 1.0, "train_top1": 0.5, "lr": 0.01},  # not evaluated this epoch
        {"epoch": 3, "loss": 0.5, "test_loss": 1.5, "train_top1": 0.75, "test_top1": 0.625, "lr": 0.001},
    ]
    training_curves([("run", records)], tmp_path / "curves.png")
    (fig,) = kept
    loss, test, top1, lr = fig.axes  # the objective and the test CE on axes of their own

    def lines(ax: Any) -> list[tuple[list[float], list[float]]]:
        return [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines]

    assert lines(loss) == [([1, 2, 3], [2.0, 1.0, 0.5])]
    assert lines(test) == [([1, 3], [2.5, 1.5])] and test.get_yscale() == "log"
    assert loss.get_yscale() == "linear"
    assert lines(top1) == [([1, 3], [50.0, 62.5]), ([1, 2, 3], [25.0, 50.0, 75.0])]  # test, then train, in %
    assert lines(lr) == [([1, 2, 3], [0.1, 0.01, 0.001])]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_every_run_directory_has_its_curves_and_evaluate_plots_several(ekd, tmp_path: Path) -> None:  # noqa: ANN001
    for name in ("first", "second"):
        code, _, err = ekd(
            "train", "--model", "tiny_cnn", *TINY, "--run-name", name, "--seed", str(len(name)), "--quiet"
        )
        assert code == 0, err
        import matplotlib.image

        assert matplotlib.image.imread(_run_dir(name) / "curves.png").shape[2] == 4  # an RGBA PNG
    code, out, err = ekd("evaluate", "store/runs", "--plot", "both.png", "--limit-test", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["plot"] == "both.png" and Path("both.png").is_file()
    assert "training curves of 2 run(s): both.png" in err

    code, out, err = ekd("evaluate", "tiny_cnn", "--plot", "x.png")
    assert (code, out) == (2, "")
    assert err == (
        "error: --plot draws the training curves of runs, and none of the targets is a run directory or a run "
        "name; pass runs (e.g. ekd-store/runs/*).\n"
    )
    code, _, err = ekd("evaluate", "store/runs/first", "--plot", "x.pdf")
    assert (code, err) == (
        2,
        "error: --plot writes a PNG image; give a file name ending in .png, not 'x.pdf'.\n",
    )
