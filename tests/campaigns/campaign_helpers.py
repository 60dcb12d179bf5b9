"""The reference campaign of the campaign tests: its configs, and ``ekd sweep`` as a subprocess.

Two configs (KD, and KD + HE-DA at 50 %) x two seeds, ResNet56 -> ResNet20 (a pair of the paper's
Table 5), 2 epochs on 256 training images, ``--jobs 2``; the teacher (2 epochs, its
``--teacher-config``) and its scores are the campaign's prerequisites.  Other tests compare their campaigns' weights with these runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CONFIG = """teacher = "resnet56"
student = "resnet20"
method = "kd"
epochs = 2
limit_train = 256
limit_test = 128
"""
CONFIGS = {"kd": CONFIG, "he_cutmix": CONFIG + 'augment = "he-cutmix"\nrate = 0.5\n'}
TEACHER = "epochs = 2\n"  # the teachers' recipe: their own lr and batch size, 2 epochs
NAME = "mini"
RUNS = ("kd-seed0", "he_cutmix-seed0", "kd-seed1", "he_cutmix-seed1")


@dataclass
class Reference:
    folder: Path  # the config files and the working directory of the sweep
    store: Path
    output: str

    def configs(self) -> list[str]:
        return [str(self.folder / f"{stem}.toml") for stem in CONFIGS]

    def run_dir(self, store: Path, run: str) -> Path:
        return store / "runs" / f"{NAME}.{run}"


def sweep_command(folder: Path, store: Path, *extra: str) -> list[str]:
    configs = [str(folder / f"{stem}.toml") for stem in CONFIGS]
    teacher = folder / "teacher.toml"
    teacher.write_text(TEACHER)
    return [sys.executable, "-m", "ekdcli", "sweep", *configs, "--seeds", "0,1", "--name", NAME,
            "--teacher-config", str(teacher), "--store", str(store), *extra]  # fmt: skip


def sweep(folder: Path, store: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EKD_HOME"}
    return subprocess.run(
        sweep_command(folder, store, *extra), cwd=folder, env=env, capture_output=True, text=True, timeout=900
    )
