"""A campaign's prerequisites: a teacher built with its own recipe (never a student's), a score
file covering every training image the runs that use it read, both stated in the plan."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ekdcli.campaign.sweep import SweepRequest, prepare
from ekdcli.config import Config, read_toml

STUDENT = 'teacher = "resnet8"\nstudent = "tiny_cnn"\nmethod = "kd"\nepochs = 1\nlr = 0.01\nbatch_size = 16\n'
HE = STUDENT + 'augment = "he-cutmix"\nrate = 0.5\nlimit_test = 32\n'


def _write(folder: Path, **texts: str) -> list[str]:
    for stem, text in texts.items():
        (folder / f"{stem}.toml").write_text(text)
    return [str(folder / f"{stem}.toml") for stem in texts]


def _prerequisites(tmp_path: Path, paths: list[str], teacher_config: str | None = None) -> dict[str, Any]:
    """Each prerequisite's config file as the sweep writes it before building it, by kind."""
    request = SweepRequest(configs=paths, name="c", teacher_config=teacher_config)
    plan, _ = prepare(Config(store=str(tmp_path / "store")), request)
    out = {}
    for need in plan.prerequisites:
        need.write_config()
        assert need.config_file is not None and need.config_file.parent.name == "prerequisites"
        out[need.kind] = read_toml(need.config_file)
    return out


def test_a_teacher_gets_its_own_recipe_and_the_union_of_the_images(tmp_path: Path) -> None:
    paths = _write(tmp_path, a=HE + "limit_train = 100\n", b=HE + "limit_train = 300\n")
    files = _prerequisites(tmp_path, paths)
    teacher, scores = files["teacher"], files["scores"]
    for key in ("lr", "batch_size", "epochs", "train", "method", "student"):
        assert key not in teacher, key  # the student's recipe is not the teacher's
    assert teacher["limit_train"] == 300 == scores["limit_train"]  # covers both runs' images
    assert teacher["limit_test"] == 32 and teacher["data"] == "digits"
    assert "lr" not in scores and scores["energy_temperature"] == 4.0


def test_one_run_reading_every_image_makes_the_scores_cover_all(tmp_path: Path, ekd: Any) -> None:
    paths = _write(tmp_path, a=HE + "limit_train = 100\n", b=HE)
    assert "limit_train" not in _prerequisites(tmp_path, paths)["scores"]
    code, out, err = ekd("sweep", *paths, "--dry-run", "--name", "c")
    assert code == 0, err
    assert "scores of teacher resnet8 on digits" in out
    assert "for 2 run(s): to build on every training image: ekd score --config " in out


def test_the_campaigns_teacher_config_gives_the_teachers_recipe(tmp_path: Path, ekd: Any) -> None:
    paths = _write(tmp_path, a=HE + "limit_train = 64\n")
    (tmp_path / "t.toml").write_text('lr = 0.2\nepochs = 3\nmethod = "dkd"\n\n[train]\nmomentum = 0.8\n')
    teacher = _prerequisites(tmp_path, paths, str(tmp_path / "t.toml"))["teacher"]
    assert (teacher["lr"], teacher["epochs"], teacher["train"]) == (0.2, 3, {"momentum": 0.8})
    assert "method" not in teacher and teacher["limit_train"] == 64
    code, out, err = ekd(
        "sweep", *paths, "--dry-run", "--name", "c", "--teacher-config", str(tmp_path / "t.toml")
    )
    assert code == 0, err
    assert "teacher resnet8 on digits" in out and "to build on the first 64 training images: ekd train" in out
    code, _, err = ekd("sweep", "--name", "c", "--teacher-config", str(tmp_path / "t.toml"))
    assert code == 2 and "--teacher-config define a new campaign" in err


@pytest.mark.slow
def test_a_sweep_trains_the_teacher_with_its_recipe_and_scores_what_the_runs_read(tmp_path: Path) -> None:
    import subprocess

    from safetensors import safe_open

    paths = _write(tmp_path, a=HE + "limit_train = 32\n", b=HE + "limit_train = 48\n")
    (tmp_path / "t.toml").write_text("epochs = 1\n")
    store = tmp_path / "store"
    command = [sys.executable, "-m", "ekdcli", "sweep", *paths, "--name", "c", "--store", str(store),
               "--teacher-config", str(tmp_path / "t.toml")]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    teacher = json.loads((store / "runs" / "c.teacher-resnet8-digits" / "summary.json").read_text())
    student = json.loads((store / "runs" / "c.a-seed0" / "summary.json").read_text())
    assert student["recipe"]["lr"] == 0.01 and student["recipe"]["batch_size"] == 16
    assert teacher["recipe"]["lr"] != 0.01 and teacher["recipe"]["batch_size"] != 16  # its own recipe
    assert teacher["recipe"]["epochs"] == 1
    with safe_open(str(store / "scores" / "digits" / "resnet8.safetensors"), "pt") as handle:
        assert handle.get_tensor("energies").numel() == 48  # every image either run reads
