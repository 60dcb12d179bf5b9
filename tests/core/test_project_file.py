"""One project file serves every method and dataset: the data a --data-root holds is recognized or
refused, and option tables a file sets for other components are noted and ignored (never when
given on the command line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ekdcli.config import resolve
from ekdcli.jobs.build import dataset_key
from ekdcli.jobs.plan import build_losses, plan_methods
from ekdcli.util.errors import UsageError


def _npz(path: Path, classes: int, names: bool = True) -> Path:
    arrays: dict[str, Any] = {
        "x_train": np.zeros((classes, 32, 32, 3), np.uint8),
        "y_train": np.arange(classes),
        "x_test": np.zeros((2, 32, 32, 3), np.uint8),
        "y_test": np.zeros(2, np.int64),
    }
    if names:
        arrays["class_names"] = np.array([f"c{i}" for i in range(classes)])
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------ --data-root without --data
def test_an_npz_is_recognized_by_its_number_of_classes(tmp_path: Path) -> None:
    config = resolve({"data_root": str(_npz(tmp_path / "mine.npz", 100))})
    assert config.data == "cifar100" and config.sources["data"].startswith("recognized from ")
    assert resolve({"data_root": str(_npz(tmp_path / "ten.npz", 10, names=False))}).data == "cifar10"
    # --data wins: nothing is guessed
    assert resolve({"data_root": str(tmp_path / "mine.npz"), "data": "cifar10"}).data == "cifar10"


def test_the_shared_cifar_file_and_a_torchvision_folder_are_cifar100(
    shared_data: Path, tmp_path: Path
) -> None:
    assert resolve({"data_root": str(shared_data / "tiny_cifar100.npz")}).data == "cifar100"
    (tmp_path / "cifar-100-python").mkdir()
    assert resolve({"data_root": str(tmp_path)}).data == "cifar100"
    assert resolve({"data_root": str(tmp_path / "cifar-100-python")}).data == "cifar100"


@pytest.mark.parametrize("kind", ["npz7", "folder", "missing"])
def test_anything_else_is_refused_in_one_sentence(tmp_path: Path, ekd: Any, kind: str) -> None:
    root = {
        "npz7": lambda: _npz(tmp_path / "seven.npz", 7),
        "folder": lambda: tmp_path,
        "missing": lambda: tmp_path / "nope.npz",
    }[kind]()
    code, out, err = ekd("train", "--model", "tiny_cnn", "--data-root", str(root), "--epochs", "1")
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"error: --data-root {root} ") and "--data" in err
    if kind == "npz7":
        assert "an .npz with 7 classes" in err and "name it with --data (see 'ekd list datasets')." in err
    assert not (tmp_path / "ekd-store").exists() and not Path("ekd-store").exists()  # nothing trained


# ------------------------------------------------------------------ option tables of other components
def _project(tmp_path: Path, text: str) -> None:
    (tmp_path / "ekd.toml").write_text(text)


def test_distiller_options_of_another_method_are_noted_from_a_file_refused_from_flags(tmp_path: Path) -> None:
    _project(tmp_path, 'data = "fake"\n[distiller]\nalpha = 2.0\nbeta = 8.0\nt = 3.0\n')
    plan = plan_methods(resolve({"method": "kd"}))
    assert plan.distiller_options == {} and plan.rule_options == {
        "t": 3.0
    }  # kd's own (its fixed rule's) stays
    [note] = plan.notes
    assert note == "note: [distiller] alpha, beta in ekd.toml do not apply to distiller 'kd'; ignored."
    assert plan_methods(resolve({"method": "dkd"})).notes == []  # the method they were written for
    flagged = resolve({"method": "kd", "distiller": {"alpha": 2.0}})
    with pytest.raises(UsageError, match="alpha"):
        build_losses(flagged, plan_methods(flagged), ("resnet8", "tiny_cnn"))


def test_augmentation_options_without_an_augmentation(tmp_path: Path) -> None:
    _project(tmp_path, 'data = "fake"\n[augmentation]\nmode = "replace"\n')
    plan = plan_methods(resolve({"method": "kd"}))
    assert plan.augmentation_options == {} and plan.notes == [
        "note: [augmentation] in ekd.toml does not apply to a run without --augment; ignored."
    ]
    assert plan_methods(resolve({"method": "kd", "augment": "he-cutmix"})).augmentation_options == {
        "mode": "replace"
    }
    (tmp_path / "ekd.toml").unlink()
    with pytest.raises(UsageError, match=r"the \[augmentation\] options apply to an augmentation"):
        plan_methods(resolve({"method": "kd", "augmentation": {"mode": "replace"}}))


def test_energy_options_from_a_file_and_from_flags(tmp_path: Path) -> None:
    _project(tmp_path, 'data = "fake"\n[energy]\npreset = "official"\n')
    assert "[energy] in" in plan_methods(resolve({"method": "kd"})).notes[0]
    with pytest.raises(UsageError, match=r"the \[energy\] options apply to energy temperature rules"):
        plan_methods(resolve({"method": "kd", "energy": {"preset": "paper"}}))


def test_data_options_of_another_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ekdcli.jobs.build import load_dataset

    _project(tmp_path, 'data = "fake"\n[data_options]\nn_train = 64\nn_test = 16\n')
    assert dataset_key(resolve({})) == "fake-n_test16-n_train64"
    digits = resolve({"data": "digits"})
    assert dataset_key(digits) == "digits"  # the fake dataset's sizes are not digits' options
    assert load_dataset(digits).num_classes == 10
    assert capsys.readouterr().out == (
        "note: [data_options] n_train, n_test in ekd.toml do not apply to dataset 'digits'; ignored.\n"
    )
    with pytest.raises(UsageError, match="n_train"):  # given now, it is an error
        load_dataset(resolve({"data": "digits", "data_options": {"n_train": 64}}))
