"""The README's CIFAR-100 section runs as written: its commands, then its ``ekd.toml`` with the
commands below it (the paper's main comparison: KD and Energy DKD + HE-DA from one project file).

The blocks are read from README.md itself; only the data file is swapped for the 1,000-image
``tiny_cifar100.npz``, and sizes keep the runs tiny without changing what the commands do:
``limit_train``/``limit_test`` and a ``[train]`` table in the project file, and ``--steps 1 --rounds 1``
after ``ekd bench``.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
FULL_DATA = "../shared/data/cifar100.npz"
SIZES = "limit_train = 64\nlimit_test = 64\n"  # before any table
TINY = "\n[train]\nepochs = 1\nbatch_size = 16\n"


def cifar_section() -> list[tuple[str, str]]:
    """``(language, text)`` of each fenced block of the README's "On CIFAR-100" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### On CIFAR-100", 1)[1].split("\n### ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def test_the_section_has_commands_a_project_file_and_commands_that_use_it() -> None:
    kinds = [language for language, _ in cifar_section()]
    assert kinds == ["bash", "toml", "bash"]
    (_, first), (_, toml), (_, second) = cifar_section()
    assert FULL_DATA in first and FULL_DATA in toml
    # the file's pair is the one the commands above it trained and scored
    teacher = re.search(r'^teacher = "(\w+)"', toml, flags=re.M)
    assert teacher is not None and f"--teacher {teacher.group(1)}" in first
    assert f"--model {teacher.group(1)}" in first
    assert "ekd distill --method kd" in second and "ekd distill --method energy_dkd" in second


def _commands(block: str, data: Path) -> list[list[str]]:
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line.replace(FULL_DATA, str(data)))[1:] for line in lines if line.startswith("ekd ")]


def _expand(args: list[str], cwd: Path) -> list[str]:
    """What the shell does with ``ekd-store/runs/*``."""
    out: list[str] = []
    for arg in args:
        out.extend(sorted(str(p) for p in cwd.glob(arg)) if "*" in arg else [arg])
    return out


@pytest.mark.slow
def test_the_readme_cifar_block_runs_as_written(
    shared_data: Path, tmp_path: Path, ekd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EKD_HOME")  # the README's store: ./ekd-store
    tiny = shared_data / "tiny_cifar100.npz"
    (first, toml, second) = (text for _, text in cifar_section())
    (tmp_path / "ekd.toml").write_text(SIZES + TINY)  # sizes only, for the first block
    for args in _commands(first, tiny):
        code, out, err = ekd(*args)
        assert code == 0, (args, err)
        assert "cifar100" in out + err  # recognized from the .npz: not the embedded digits

    (tmp_path / "ekd.toml").write_text(SIZES + toml.replace(FULL_DATA, str(tiny)) + TINY)
    outputs = {}
    for args in _commands(second, tiny):
        sizes = ["--steps", "1", "--rounds", "1"] if args[0] == "bench" else []
        code, out, err = ekd(*_expand(args, tmp_path), *sizes, "--json")
        assert code == 0, (args, err)
        outputs[" ".join(args)] = (json.loads(out), err)

    kd, kd_err = outputs["distill --method kd"]
    assert kd["method"] == "kd" and kd["teacher"] == "wrn_40_2" and kd["student"] == "wrn_16_2"
    assert "note: [energy] in" in kd_err and "does not apply to method 'kd'; ignored." in kd_err
    energy, _ = outputs["distill --method energy_dkd --augment he-cutmix --rate 0.5"]
    assert energy["method"] == "energy_dkd" and energy["augment"] == "he-cutmix"
    rule = energy["objective"]["distiller"]
    assert rule["preset"] == "official" and sum(rule["train_counts"].values()) == 64
    benched, _ = outputs["bench --aug-rates 0.1,0.5,1.0"]
    assert [row["rate"] for row in benched["rows"]] == [0.1, 0.5, 1.0]
    evaluated, _ = outputs["evaluate ekd-store/runs/* --groups"]
    runs = {Path(t["target"]).name.split("-")[1] for t in evaluated["targets"]}
    assert {"kd", "energy_dkd"} <= runs
    distilled = [t for t in evaluated["targets"] if t["made_by"] == "ekd distill"]
    assert all(t["energy_groups"]["available"] and t["energy_groups"]["samples"] == 64 for t in distilled)
    plain, _ = outputs["evaluate ekd-store/runs/*"]
    assert [t["top1"] for t in plain["targets"]] == [t["top1"] for t in evaluated["targets"]]
