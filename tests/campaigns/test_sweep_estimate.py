"""What ``ekd sweep --dry-run`` adds to its plan: a stored teacher's provenance (and the warning for
one that looks untrained), and the runs' training time at the speeds the store's runs recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

KD = 'teacher = "resnet8"\nstudent = "tiny_cnn"\nmethod = "kd"\nlr = 0.01\nbatch_size = 16\n'


def _config(folder: Path, text: str) -> str:
    path = folder / "a.toml"
    path.write_text(text)
    return str(path)


def _teacher(store: Path, **meta: Any) -> Path:
    path = store / "models" / "digits" / "resnet8.safetensors"
    path.parent.mkdir(parents=True)
    values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    save_file({"w": np.zeros(1, dtype=np.float32)}, str(path), metadata=values)
    return path


def test_the_plan_shows_a_stored_teachers_provenance_and_warns_when_it_looks_untrained(
    tmp_path: Path, ekd: Any
) -> None:
    store = tmp_path / "store"
    path = _teacher(
        store, made_by="ekd train", dataset="digits", epochs=2, recipe={"epochs": 2}, recipe_name="quick",
        top1=0.11, num_classes=10,
    )  # fmt: skip
    code, out, err = ekd("sweep", _config(tmp_path, KD + "epochs = 1\n"), "--dry-run", "--name", "c",
                         "--store", str(store))  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    at = lines.index(f"  teacher resnet8 on digits ({path}), for 1 run(s): ready")
    assert lines[at + 1] == (
        f"    teacher: {path} (ekd train, 2 epochs (recipe quick), on digits, test top-1 11.00%)"
    )
    # 2 of the quick recipe's 30 epochs is under half; 11% is under twice chance (10% for 10 classes)
    assert lines[at + 2] == (
        f"    WARNING: the teacher {path} looks untrained: it trained 2 of the quick recipe's 30 epochs; "
        "its test top-1 11.00% is near chance (10.00% for 10 classes). Its scores and distillation results "
        "are not comparable to the paper's; train it fully (e.g. 'ekd train MODEL' without --epochs)."
    )


def test_a_fully_trained_teacher_gets_no_warning(tmp_path: Path, ekd: Any) -> None:
    store = tmp_path / "store"
    path = _teacher(store, made_by="ekd train", dataset="digits", epochs=30, recipe_name="quick", top1=0.9,
                    num_classes=10)  # fmt: skip
    code, out, err = ekd("sweep", _config(tmp_path, KD), "--dry-run", "--name", "c", "--store", str(store))
    assert code == 0, err
    assert f"    teacher: {path} (ekd train, 30 epochs (recipe quick), on digits, test top-1 90.00%)" in out
    assert "WARNING" not in out


def _recorded_run(store: Path, name: str, student: str, speeds: list[float]) -> None:
    run = store / "runs" / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(f'student = "{student}"\ndata = "digits"\n')
    (run / "metrics.jsonl").write_text("".join(json.dumps({"images_per_s": s}) + "\n" for s in speeds))


def test_the_plan_estimates_the_runs_from_the_recorded_speeds(tmp_path: Path, ekd: Any) -> None:
    store = tmp_path / "store"
    _recorded_run(store, "old", "tiny_cnn", [100.0, 200.0, 300.0])  # median 200 images/s
    config = _config(tmp_path, KD + "epochs = 3\nlimit_train = 400\n")
    code, out, err = ekd("sweep", config, "--seeds", "0,1", "--jobs", "2", "--dry-run", "--name", "c",
                         "--store", str(store))  # fmt: skip
    assert code == 0, err
    # each run: 3 epochs x 400 images / 200 images/s = 6 s; two runs 12 s, 6 s two at a time; the
    # teacher prerequisite (not trained yet) is not a run of the plan
    assert out.splitlines()[-1] == (
        "estimate: about 0:00:12 of training for 2 run(s) at the speeds earlier runs measured "
        "(0:00:06 with --jobs 2)"
    )
    # without --limit-train a run reads the dataset's every training image (digits: 1,442)
    code, out, err = ekd("sweep", _config(tmp_path, KD + "epochs = 1\n"), "--dry-run", "--name", "d",
                         "--store", str(store))  # fmt: skip
    assert code == 0, err
    seconds = round(1 * 1442 / 200)  # 7.21 s
    assert out.splitlines()[-1].startswith(f"estimate: about 0:00:{seconds:02d} of training for 1 run(s)")


def test_a_run_no_earlier_run_measured_is_named(tmp_path: Path, ekd: Any) -> None:
    code, out, err = ekd("sweep", _config(tmp_path, KD + "epochs = 1\n"), "--dry-run", "--name", "c",
                         "--store", str(tmp_path / "store"))  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[-1] == (
        "estimate: 1 run(s) of tiny_cnn on digits not estimated (no earlier run measured them)"
    )
