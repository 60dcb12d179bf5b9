"""Figures: PNG files written atomically for 1- and 3-channel data; bad input refused before writing."""

from __future__ import annotations

import pytest
import torch

from ekdcli.method.figures import (
    average_prediction_plot,
    certain_uncertain_grid,
    certain_uncertain_picks,
    energy_histogram,
    pick_classes,
)
from ekdcli.method.partition import make_partition
from ekdcli.sdk.energy import compute_thresholds
from ekdcli.util.errors import UsageError

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes: int = 2000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > min_bytes
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def toy_data(n: int = 48, k: int = 4, channels: int = 3, size: int = 8):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % k
    logits = torch.randn(n, k, generator=gen) * 3
    energies = -4.0 * torch.logsumexp(logits / 4.0, dim=1)
    return images, labels, logits, energies


def test_energy_histogram(tmp_path) -> None:
    _, _, _, energies = toy_data()
    path = energy_histogram(
        energies, compute_thresholds(energies, 0.2, 0.2), tmp_path / "fig" / "h.png", "toy"
    )
    assert path == tmp_path / "fig" / "h.png"
    assert_png(path)
    assert_png(energy_histogram(energies, None, tmp_path / "plain.png"))
    with pytest.raises(UsageError, match="no energies"):
        energy_histogram(torch.zeros(0), None, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


@pytest.mark.parametrize("channels", [1, 3])
def test_certain_uncertain_grid(tmp_path, channels: int) -> None:
    images, labels, _, energies = toy_data(channels=channels)
    names = ["apple", "bee", "cat", "dog"]
    path = certain_uncertain_grid(
        images, labels, energies, names, [0, 2], 3, tmp_path / f"grid{channels}.png"
    )
    assert_png(path)


def test_picks_are_each_class_lowest_and_highest_energies_never_both() -> None:
    labels = torch.tensor([0, 1, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0])
    energies = torch.tensor([5.0, 1.0, -3.0, 2.0, 0.0, 9.0, -1.0, 4.0, 7.0, 3.0, 8.0, 6.0])
    # class 0 by energy: idx 2 (-3), 6 (-1), 3 (2), 9 (3), 0 (5), 11 (6), 8 (7), 10 (8), 5 (9)
    certain, uncertain = certain_uncertain_picks(labels, energies, 0, 3)
    assert certain.tolist() == [2, 6, 3] and uncertain.tolist() == [5, 10, 8]
    certain, uncertain = certain_uncertain_picks(labels, energies, 0, 6)  # 9 images: 5 + 4
    assert certain.tolist() == [2, 6, 3, 9, 0] and uncertain.tolist() == [5, 10, 8, 11]
    assert certain_uncertain_picks(labels, energies, 1, 4)[0].tolist() == [4]  # 2 images: one each
    assert certain_uncertain_picks(labels, energies, 1, 4)[1].tolist() == [1]
    certain, uncertain = certain_uncertain_picks(labels, energies, 2, 4)  # one image: certain only
    assert certain.tolist() == [7] and uncertain.numel() == 0
    assert [t.numel() for t in certain_uncertain_picks(labels, energies, 3, 4)] == [0, 0]


def test_grid_handles_classes_with_few_images_and_refuses_bad_input(tmp_path) -> None:
    images, labels, _, energies = toy_data(n=9, k=4)  # class 3 has 2 images, fewer than per_class
    assert_png(certain_uncertain_grid(images, labels, energies, list("abcd"), [3], 4, tmp_path / "few.png"))
    with pytest.raises(UsageError, match="classes \\[7\\] are out of range"):
        certain_uncertain_grid(images, labels, energies, list("abcd"), [7], 2, tmp_path / "bad.png")
    with pytest.raises(UsageError, match="uint8"):
        certain_uncertain_grid(images.float(), labels, energies, list("abcd"), [0], 2, tmp_path / "bad.png")
    with pytest.raises(UsageError, match="9 images, 8 labels"):
        certain_uncertain_grid(images, labels[:8], energies, list("abcd"), [0], 2, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_average_prediction_plot(tmp_path) -> None:
    _, labels, logits, energies = toy_data(n=80, k=12)
    part = make_partition(energies, 0.3, 0.3)
    probs = torch.softmax(logits, dim=1)
    path = average_prediction_plot(
        probs, labels, part.mask("low"), part.mask("high"), [0, 1, 5], tmp_path / "avg.png", top=10
    )
    assert_png(path)
    empty = torch.zeros(80, dtype=torch.bool)  # a group with no samples still draws
    assert_png(average_prediction_plot(probs, labels, empty, part.mask("high"), [2], tmp_path / "one.png"))
    with pytest.raises(UsageError, match="same samples"):
        average_prediction_plot(probs[:5], labels, empty, empty, [0], tmp_path / "bad.png")


def test_pick_classes_is_reproducible_and_uses_present_classes() -> None:
    labels = torch.tensor([5, 5, 9, 2, 7, 7, 11])
    picked = pick_classes(labels, num=3, seed=1)
    assert picked == pick_classes(labels, num=3, seed=1) and picked == sorted(picked)
    assert len(set(picked)) == 3 and set(picked) <= {2, 5, 7, 9, 11}
    assert pick_classes(labels, num=10) == [2, 5, 7, 9, 11]
    assert {tuple(pick_classes(labels, 2, seed=s)) for s in range(10)} != {tuple(pick_classes(labels, 2, 0))}


def _kept_figures(monkeypatch: pytest.MonkeyPatch) -> list:
    from pathlib import Path

    from ekdcli.method import figures

    kept: list = []

    def keep(fig, path):  # noqa: ANN001, ANN202
        kept.append(fig)
        return Path(path)

    monkeypatch.setattr(figures, "save_figure", keep)
    return kept


def test_the_grid_frames_certain_blue_and_uncertain_red_as_the_histogram(tmp_path, monkeypatch) -> None:
    from matplotlib.colors import to_rgba

    from ekdcli.method.figures import HIGH_COLOR, LOW_COLOR

    kept = _kept_figures(monkeypatch)
    images, labels, _, energies = toy_data()
    certain_uncertain_grid(images, labels, energies, ["a", "b", "c", "d"], [0], 2, tmp_path / "g.png")
    (fig,) = kept
    frames = [to_rgba(ax.spines["top"].get_edgecolor()) for ax in fig.axes]
    assert frames[:2] == [to_rgba(LOW_COLOR)] * 2 and frames[2:4] == [to_rgba(HIGH_COLOR)] * 2
    assert "certain, blue" in fig._suptitle.get_text() and "uncertain, red" in fig._suptitle.get_text()


def test_the_histogram_takes_a_log_axis_when_one_bin_dominates(tmp_path, monkeypatch) -> None:
    kept = _kept_figures(monkeypatch)
    spread = torch.linspace(-10.0, -2.0, 200)
    piled = torch.cat([spread, torch.full((5000,), -9.99)])  # one bin holds 5000 of 5200
    energy_histogram(spread, None, tmp_path / "a.png")
    energy_histogram(piled, compute_thresholds(piled, 0.2, 0.2), tmp_path / "b.png")
    energy_histogram(piled, None, tmp_path / "c.png", log=False)
    energy_histogram(spread, None, tmp_path / "d.png", log=True)
    assert [fig.axes[0].get_yscale() for fig in kept] == ["linear", "log", "linear", "log"]
