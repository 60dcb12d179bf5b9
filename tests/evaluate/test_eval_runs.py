"""``run_evaluate`` over fake run directories written by the test (config.toml, metrics, weights)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from ekd_plugins.models.tiny import tiny_cnn

from ekdcli.config import Config, resolve
from ekdcli.jobs.evaluate import run_evaluate
from ekdcli.jobs.evaluate_report import format_evaluation
from ekdcli.method.scoring import save_scores, score_from_logits
from ekdcli.store.layout import Store
from ekdcli.store.weights import save_tensors
from ekdcli.util.errors import UsageError

DATA_OPTIONS = {"n_train": 64, "n_test": 32}
DATA_KEY = "fake-n_test32-n_train64"


def _dataset() -> Any:
    from ekd_plugins.datasets.fake import fake

    return fake(**DATA_OPTIONS)


def _weights(path: Path, seed: int, extra: dict[str, Any] | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = tiny_cnn(num_classes=10, in_channels=3).eval()
    meta = {"arch": "tiny_cnn", "num_classes": 10, "in_channels": 3, "dataset": DATA_KEY, **(extra or {})}
    save_tensors(path, model.state_dict(), meta)
    return model


def make_run(
    root: Path,
    name: str,
    seed: int,
    tops: list[float],
    *,
    method: str = "energy_kd",
    rate: float | None = None,
    finished: bool = True,
    weights: tuple[str, ...] = ("best", "last"),
) -> dict[str, torch.nn.Module]:
    """A run directory as fit() leaves it: per-epoch test top-1 ``tops``."""
    run = root / name
    run.mkdir(parents=True)
    config = Config(
        data="fake",
        data_options=dict(DATA_OPTIONS),
        teacher="tiny_cnn",
        student="tiny_cnn",
        method=method,
        rate=rate,
        seed=seed,
        run_name=name,
        store=str(root.parent),
    )
    (run / "config.toml").write_text(config.to_toml())
    lines = [json.dumps({"epoch": e + 1, "test_top1": t, "test_top5": 1.0}) for e, t in enumerate(tops)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    best_epoch = max(range(len(tops)), key=lambda i: tops[i]) + 1
    if finished:
        summary = {
            "best_top1": max(tops),
            "best_epoch": best_epoch,
            "last_top1": tops[-1],
            "epochs": len(tops),
        }
        (run / "summary.json").write_text(json.dumps(summary))
    meta = {"made_by": "ekd distill", "method": method, "augment": None, "teacher": "tiny_cnn"}
    return {w: _weights(run / f"{w}.safetensors", seed * 10 + i, meta) for i, w in enumerate(weights)}


def _config(**flags: Any) -> Config:
    return resolve(flags)


def _reference_top1(model: torch.nn.Module, split: str = "test") -> float:
    """Top-1 written independently: (x/255 - mean)/std in float64, forward in eval mode."""
    data = _dataset()
    images = data.test_images if split == "test" else data.train_images
    labels = data.test_labels if split == "test" else data.train_labels
    mean = torch.tensor(data.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float64).view(1, -1, 1, 1)
    x = ((images.double() / 255.0 - mean) / std).float()
    with torch.no_grad():
        pred = model.eval()(x).argmax(dim=1)
    return float((pred == labels).double().mean())


def _sample_std(values: list[float]) -> float:
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def test_groups_over_seeds_with_mean_and_sample_std(tmp_path: Path) -> None:
    runs = tmp_path / "store" / "runs"
    models = {
        "a0": make_run(runs, "a0", 0, [0.30, 0.50, 0.48]),
        "a1": make_run(runs, "a1", 1, [0.40, 0.54, 0.50]),
        "a2": make_run(runs, "a2", 2, [0.20, 0.25, 0.25], finished=False),  # killed: metrics only
        "b0": make_run(runs, "b0", 0, [0.10, 0.125], method="kd"),
    }
    result = run_evaluate(_config(), [str(runs)], "test", None, "best")
    by_target = {Path(r["target"]).name: r for r in result.targets}
    assert sorted(by_target) == ["a0", "a1", "a2", "b0"]
    for name, r in by_target.items():
        assert r["top1"] == pytest.approx(_reference_top1(models[name]["best"]))
        assert r["which"] == "best" and r["n"] == 32 and r["data"] == DATA_KEY
    assert by_target["a2"]["run"]["finished"] is False
    assert by_target["a2"]["run"]["best_top1"] == 0.25 and by_target["a2"]["run"]["best_epoch"] == 2

    groups = {g["label"]: g for g in result.groups}
    assert sorted(groups) == ["energy_kd tiny_cnn->tiny_cnn", "kd tiny_cnn->tiny_cnn"]
    a = groups["energy_kd tiny_cnn->tiny_cnn"]
    assert a["n"] == 3
    assert a["best_top1"]["mean"] == pytest.approx((0.50 + 0.54 + 0.25) / 3)
    assert a["best_top1"]["std"] == pytest.approx(_sample_std([0.50, 0.54, 0.25]))
    assert a["last_top1"]["mean"] == pytest.approx((0.48 + 0.50 + 0.25) / 3)
    tops = [by_target[n]["top1"] for n in ("a0", "a1", "a2")]
    assert a["top1"]["mean"] == pytest.approx(sum(tops) / 3)
    assert a["top1"]["std"] == pytest.approx(_sample_std(tops))
    eces = [by_target[n]["ece"] for n in ("a0", "a1", "a2")]
    assert a["ece"]["std"] == pytest.approx(_sample_std(eces))
    b = groups["kd tiny_cnn->tiny_cnn"]
    assert b["n"] == 1 and b["best_top1"] == {"mean": 0.125, "std": None, "n": 1}

    text = format_evaluation(result.as_dict())
    # per-target table: each run's best-epoch and last-epoch top-1 from its metrics, beside this evaluation
    _, header, _, *target_rows = text.split("\n\n")[0].splitlines()
    columns = header.split()
    assert columns[:7] == ["target", "top-1", "top-5", "NLL", "ECE%", "best", "last"]
    assert text.startswith(f"runs in {runs}:\n")  # the folder once, each run by its name
    cells = {row.split()[0]: row.split() for row in target_rows if not row.startswith(("(", " "))}
    assert {name: (cells[name][5], cells[name][6]) for name in cells} == {
        "a0": ("50.00", "48.00"),
        "a1": ("54.00", "50.00"),
        "a2": ("25.00", "25.00"),
        "b0": ("12.50", "12.50"),
    }
    assert cells["a0"][1] == f"{100 * by_target['a0']['top1']:.2f}"  # fractions in JSON, percent in text
    assert "(top-1 to ECE: the best weights on 32 test images" in text  # the sample count shown
    assert f"{(50 + 54 + 25) / 3:.2f} ± {_sample_std([50.0, 54.0, 25.0]):.2f}" in text
    assert "12.50 ± " not in text and "  12.50  " in text  # one run: its number, no std
    table = text.split("by configuration")[1].splitlines()[1:]
    header, rule, *rows = [line for line in table if not line.startswith("(")]
    assert header.startswith("configuration") and set(rule.replace(" ", "")) == {"-"}
    assert len(rows) == 2 and all(len(r) <= len(rule) for r in rows)
    assert {len(r) for r in rows + [rule]} == {len(rule)}  # right-aligned numbers end at the same column


def test_last_weights_and_configurations_told_apart(tmp_path: Path) -> None:
    runs = tmp_path / "store" / "runs"
    models = make_run(runs, "r1", 0, [0.10, 0.20], rate=0.1)
    make_run(runs, "r2", 0, [0.30, 0.40], rate=0.5)
    result = run_evaluate(_config(), [str(runs / "r1"), "r2"], "test", None, "last")
    assert result.targets[0]["top1"] == pytest.approx(_reference_top1(models["last"]))
    assert result.targets[0]["which"] == "last"
    labels = sorted(g["label"] for g in result.groups)
    assert labels == ["energy_kd tiny_cnn->tiny_cnn [rate=0.1]", "energy_kd tiny_cnn->tiny_cnn [rate=0.5]"]


def test_energy_groups_from_the_runs_teacher_scores(tmp_path: Path) -> None:
    runs = tmp_path / "store" / "runs"
    models = make_run(runs, "e1", 0, [0.10])
    data = _dataset()
    teacher_logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(5)) * 2
    table = score_from_logits(
        teacher_logits,
        data.train_labels,
        4.0,
        teacher="tiny_cnn",
        dataset_fingerprint=data.fingerprint("train"),
    )
    save_scores(Store(tmp_path / "store").score_path(DATA_KEY, "tiny_cnn"), table)

    # by default only the test split is measured: the groups need --groups
    plain = run_evaluate(_config(), ["e1"], "test", None, "best", rate=0.2).targets[0]["energy_groups"]
    assert plain["available"] is False and plain["requested"] is False
    result = run_evaluate(_config(), ["e1"], "test", None, "best", rate=0.2, groups=True)
    energy = result.targets[0]["energy_groups"]
    assert energy["available"] and energy["rate"] == 0.2 and energy["low_rule"] == "released"
    assert energy["samples"] == 64
    # Independent partition: E_low = sorted[floor(64*.2)] = sorted[12], E_high = sorted[64-12-1].
    e = -4.0 * torch.logsumexp(teacher_logits.double() / 4.0, dim=1)
    ordered = torch.sort(e).values
    low, high = e < ordered[12], e > ordered[51]
    others = ~(low | high)
    mean = torch.tensor(data.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float64).view(1, -1, 1, 1)
    with torch.no_grad():
        pred = models["best"](((data.train_images.double() / 255 - mean) / std).float()).argmax(1)
    correct = (pred == data.train_labels).double()
    teacher_correct = (teacher_logits.argmax(1) == data.train_labels).double()
    for name, mask in (("low", low), ("others", others), ("high", high)):
        group = energy["groups"][name]
        assert group["count"] == int(mask.sum())
        assert group["accuracy"] == pytest.approx(float(correct[mask].mean()))
        assert group["teacher_accuracy"] == pytest.approx(float(teacher_correct[mask].mean()))
    assert [energy["groups"][g]["count"] for g in ("low", "others", "high")] == [12, 40, 12]
    assert "train accuracy by energy (64 training images, rate 0.2" in format_evaluation(result.as_dict())

    # on the first 20 training images: the same sets (from every scored sample), fewer members
    first = run_evaluate(_config(limit_train=20), ["e1"], "test", None, "best", groups=True)
    bounded = first.targets[0]["energy_groups"]
    assert bounded["samples"] == 20
    for name, mask in (("low", low), ("others", others), ("high", high)):
        head = mask[:20]
        assert bounded["groups"][name]["count"] == int(head.sum())
        if head.any():
            assert bounded["groups"][name]["accuracy"] == pytest.approx(float(correct[:20][head].mean()))

    # the same file given explicitly, and one for other data refused
    explicit = run_evaluate(_config(), ["e1"], "test", Path(energy["scores"]), "best")
    assert explicit.targets[0]["energy_groups"]["groups"] == energy["groups"]
    other = tmp_path / "other.safetensors"
    save_scores(other, score_from_logits(teacher_logits, torch.arange(64) % 10, 4.0))
    with pytest.raises(UsageError, match="scores another training set"):
        run_evaluate(_config(), ["e1"], "test", other, "best")


def test_no_scores_is_reported_not_fatal(tmp_path: Path) -> None:
    make_run(tmp_path / "store" / "runs", "n1", 0, [10.0])
    energy = run_evaluate(_config(), ["n1"], "test", None, "best", groups=True).targets[0]["energy_groups"]
    assert energy["available"] is False
    assert "no score file" in energy["reason"] and "tiny_cnn.safetensors" in energy["reason"]


def test_long_tail_groups_when_the_dataset_has_class_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ekdcli.jobs.build

    original = ekdcli.jobs.build.load_dataset
    counts = [200, 101, 100, 60, 20, 19, 10, 5, 1, 300]

    def with_counts(config: Config) -> Any:
        data = original(config)
        data.info["class_counts"] = counts
        return data

    monkeypatch.setattr(ekdcli.jobs.build, "load_dataset", with_counts)
    models = make_run(tmp_path / "store" / "runs", "lt", 0, [10.0])
    lt = run_evaluate(_config(), ["lt"], "test", None, "best").targets[0]["long_tail"]
    data = _dataset()
    mean = torch.tensor(data.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(data.std, dtype=torch.float64).view(1, -1, 1, 1)
    with torch.no_grad():
        pred = models["best"](((data.test_images.double() / 255 - mean) / std).float()).argmax(1)
    for name, classes in (("many", [0, 1, 9]), ("medium", [2, 3, 4]), ("few", [5, 6, 7, 8])):
        rows = torch.isin(data.test_labels, torch.tensor(classes))
        assert lt[name]["classes"] == len(classes)
        assert lt[name]["samples"] == int(rows.sum())
        assert lt[name]["accuracy"] == pytest.approx(
            float((pred[rows] == data.test_labels[rows]).double().mean())
        )


def test_store_model_and_weights_file_targets(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    model = _weights(store.model_path(DATA_KEY, "tiny_cnn"), 7)
    config = _config(data="fake", data_options=dict(DATA_OPTIONS))
    by_name = run_evaluate(config, ["tiny_cnn"], "train", None, "best").targets[0]
    assert by_name["kind"] == "store" and by_name["split"] == "train" and by_name["n"] == 64
    assert by_name["top1"] == pytest.approx(_reference_top1(model, "train"))
    assert by_name["run"] is None and by_name["which"] is None
    by_path = run_evaluate(config, [str(store.model_path(DATA_KEY, "tiny_cnn"))], "test", None, "best")
    assert by_path.targets[0]["kind"] == "weights"
    assert by_path.targets[0]["top1"] == pytest.approx(_reference_top1(model))
    limited = run_evaluate(
        _config(data="fake", data_options=dict(DATA_OPTIONS), limit_test=8),
        ["tiny_cnn"],
        "test",
        None,
        "best",
    )
    assert limited.targets[0]["n"] == 8


def test_bad_targets_say_what_was_looked_for(tmp_path: Path) -> None:
    runs = tmp_path / "store" / "runs"
    with pytest.raises(UsageError) as info:
        run_evaluate(_config(), ["nosuch"], "test", None, "best")
    message = info.value.message
    assert "'nosuch'" in message and str(Path("store") / "runs" / "nosuch") in message
    assert re.search(r"models/[^ ]+/nosuch\.safetensors", message)

    make_run(runs, "empty", 0, [1.0], weights=())
    with pytest.raises(UsageError, match="holds no weights"):
        run_evaluate(_config(), ["empty"], "test", None, "best")
    make_run(runs, "lastonly", 0, [1.0], weights=("last",))
    with pytest.raises(UsageError, match="--which last"):
        run_evaluate(_config(), ["lastonly"], "test", None, "best")
    with pytest.raises(UsageError, match="does not exist"):
        run_evaluate(_config(), ["missing.safetensors"], "test", None, "best")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(UsageError, match="corrupt.safetensors is not a readable safetensors file"):
        run_evaluate(_config(), [str(corrupt)], "test", None, "best")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="not a run directory"):
        run_evaluate(_config(), [str(tmp_path / "plain")], "test", None, "best")
    with pytest.raises(UsageError, match="--rate must be in"):
        run_evaluate(_config(), ["lastonly"], "test", None, "last", rate=0.7)
