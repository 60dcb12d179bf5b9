"""A stored model's provenance, shown by ekd score / distill, and the warning for an untrained teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ekdcli.jobs.provenance import concerns, describe, read_provenance, teacher_report


def _meta(**values: object) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


FULL = _meta(
    made_by="ekd train", dataset="cifar100", epochs=240, recipe={"epochs": 240}, recipe_name="cifar",
    top1=0.7561, num_classes=100, run_dir="store/runs/t",
)  # fmt: skip


def test_a_fully_trained_teacher_is_described_without_a_warning() -> None:
    p = read_provenance(FULL)
    assert (
        describe(p)
        == "ekd train, 240 epochs (recipe cifar), on cifar100, test top-1 75.61%, run store/runs/t"
    )
    assert concerns(p) == []
    assert teacher_report("t.safetensors", FULL)[1] is None


def test_a_smoke_test_teacher_is_flagged_by_its_epochs_and_its_accuracy() -> None:
    # the case: 1 epoch of the 240-epoch recipe (run with --epochs 1), 1.48% top-1 on 100 classes
    smoke = {**FULL, **_meta(epochs=1, recipe={"epochs": 1}, top1=0.0148)}
    found = concerns(read_provenance(smoke))
    assert found == [
        "it trained 1 of the cifar recipe's 240 epochs",
        "its test top-1 1.48% is near chance (1.00% for 100 classes)",
    ]
    line, warning = teacher_report("t.safetensors", smoke)
    assert line.startswith("t.safetensors (ekd train, 1 epochs (recipe cifar)")
    assert warning is not None and warning.startswith(
        "the teacher t.safetensors looks untrained: it trained 1"
    )
    # 119 of 240 epochs is under half the recipe; 120 is not; a stopped run counts against its plan
    assert concerns(read_provenance({**FULL, **_meta(epochs=119, top1=0.7)})) != []
    assert concerns(read_provenance({**FULL, **_meta(epochs=120, top1=0.7)})) == []
    stopped = _meta(made_by="ekd train", epochs=3, recipe={"epochs": 30}, top1=0.9, num_classes=10)
    assert concerns(read_provenance(stopped)) == ["it trained 3 of its planned 30 epochs"]
    assert concerns(read_provenance(_meta(made_by="ekd import", num_classes=100))) == []  # nothing to judge


@pytest.mark.slow
def test_ekd_score_shows_the_teachers_provenance_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ekdcli.cli.main import main

    (tmp_path / "ekd.toml").write_text('data = "fake"\n[data_options]\nn_train = 64\nn_test = 32\n')
    main(["train", "--model", "tiny_cnn", "--epochs", "1", "--batch-size", "16", "--quiet"])
    capsys.readouterr()
    main(["score", "--teacher", "tiny_cnn"])
    out, err = capsys.readouterr()
    assert (
        "  teacher: " in out
        and "(ekd train, 1 epochs (recipe " in out
        and "on fake-n_test32-n_train64" in out
    )
    assert "  WARNING: the teacher " in out and "looks untrained: it trained 1 of the " in out
    assert err == ""
