"""The Python API: a lazy top level, keyword configuration, load_model, and the documented walkthrough."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ekdcli.util.errors import UsageError

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def _modules_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_ekdcli_loads_neither_torch_nor_the_api() -> None:
    loaded = _modules_after("import ekdcli")
    assert "ekdcli" in loaded
    assert not {"torch", "ekdcli.api", "ekdcli.jobs", "ekdcli.config"} & loaded
    # naming a function loads the API, still without torch (the jobs import it when they run)
    loaded = _modules_after("import ekdcli; ekdcli.distill; ekdcli.load_model")
    assert "ekdcli.api" in loaded and "torch" not in loaded


def test_the_top_level_names_are_the_apis() -> None:
    import ekdcli
    import ekdcli.api

    for name in ("load_model", "train", "score", "partition", "distill", "evaluate", "export", "DistillRun"):
        assert getattr(ekdcli, name) is getattr(ekdcli.api, name)
        assert name in dir(ekdcli) and name in ekdcli.__all__
    with pytest.raises(AttributeError, match="has no attribute 'trian'"):
        ekdcli.trian  # noqa: B018


def test_keywords_are_configuration_keys_over_the_project_file(tmp_path: Path) -> None:
    from ekdcli.api import make_config

    Path("ekd.toml").write_text('epochs = 7\nlr = 0.2\n[energy]\npreset = "official"\n')
    assert make_config({"epochs": 3}).lr is None  # ./ekd.toml is not read unless named
    assert make_config({"epochs": 3}).sources["lr"] == "default"
    config = make_config({"epochs": 3, "energy": {"t_plus": 1.0}, "data_root": None}, "ekd.toml")
    assert (config.epochs, config.lr, config.quiet) == (3, 0.2, True)  # quiet unless asked otherwise
    assert config.energy == {"preset": "official", "t_plus": 1.0}
    assert config.sources["epochs"] == "flag" and config.sources["lr"] == "ekd.toml"
    assert make_config({"quiet": False}).quiet is False
    with pytest.raises(UsageError) as caught:
        make_config({"epoch": 3, "lr": "fast"})
    assert caught.value.message == (
        "keyword arguments: unknown key 'epoch' (did you mean 'epochs'?); see docs/configuration.md for the keys."
    )
    with pytest.raises(UsageError) as caught:
        make_config({"lr": "fast"})
    assert caught.value.message == (
        "keyword arguments: 'lr' must be a number, not 'fast'. See 'ekd <command> --help' for the keys."
    )


@pytest.mark.slow
def test_load_model_from_a_run_a_store_name_and_a_file_without_loading_data(tmp_path: Path) -> None:
    import torch

    import ekdcli
    from ekdcli.store.weights import load_tensors

    run = ekdcli.train("tiny_cnn", epochs=1, limit_train=64, limit_test=32)
    tensors, _ = load_tensors(run.model_path)
    by_run = ekdcli.load_model(run.run_dir)  # its best.safetensors: the same epoch the store kept
    by_name = ekdcli.load_model("tiny_cnn", data="digits")
    by_alias_file = ekdcli.load_model(str(run.model_path))
    for model in (by_run, by_name, by_alias_file):
        assert not model.training and type(model).__name__ == "TinyCNN"
        state = model.state_dict()
        assert state.keys() == tensors.keys() and all(torch.equal(state[k], tensors[k]) for k in tensors)
    with pytest.raises(UsageError, match=r"^no trained model 'tiny_cnn' for data 'cifar100' \(looked at "):
        ekdcli.load_model("tiny_cnn", data="cifar100")  # the data picks the store's folder; nothing is loaded
    assert [r["epoch"] for r in run.metrics] == [1] and run.best_top1 == run.metrics[0]["test_top1"]


def _walkthrough_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 6, "the walkthrough lost its code blocks"
    return blocks


@pytest.mark.slow
def test_the_python_api_walkthrough_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/python-api.md, block after block in one namespace, as a notebook would run them."""
    namespace: dict[str, object] = {"__name__": "walkthrough"}
    for number, block in enumerate(_walkthrough_blocks(), start=1):
        try:
            exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message names the block
            raise AssertionError(f"block {number} of {DOC.name} failed: {type(exc).__name__}: {exc}") from exc
    printed = capsys.readouterr().out
    assert "resnet8.safetensors" in printed and "energy_kd he-cutmix" in printed
    assert "torch.Size([3, 10])" in printed  # the exported program ran on raw pixels
    assert Path("curves.png").is_file()


def test_the_losses_section_runs_as_written_and_matches_the_formulas(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/python-api.md "Use the losses in your own loop", run as written; its numbers re-derived here."""
    import torch
    import torch.nn.functional as F

    text = (
        DOC.read_text(encoding="utf-8").split("## Use the losses in your own loop", 1)[1].split("\n## ", 1)[0]
    )
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict[str, object] = {}
    exec(compile(block, "losses section", "exec"), namespace)
    first, second = capsys.readouterr().out.splitlines()
    assert first == "tensor([2., 4., 6.])"
    z_s, z_t, labels = namespace["z_s"].detach(), namespace["z_t"], namespace["labels"]
    energies = -4.0 * torch.logsumexp(namespace["teacher_logits"] / 4.0, dim=1)
    ordered = energies.sort().values
    low, high = ordered[200], ordered[1000 - 200 - 1]  # floor(N * rate) and N - floor(N * rate) - 1
    e = energies[:64]
    temps = torch.where(e < low, 6.0, torch.where(e > high, 2.0, 4.0))
    kl = (
        F.softmax(z_t / temps[:, None], 1)
        * (F.log_softmax(z_t / temps[:, None], 1) - F.log_softmax(z_s / temps[:, None], 1))
    ).sum(1)
    expected = 0.1 * F.cross_entropy(z_s, labels) + 0.9 * (kl * temps**2).mean()
    assert float(second.split()[0]) == pytest.approx(expected.item(), abs=1e-4)
    assert float(second.split()[1]) > 0


def test_evaluation_names_configuration_groups_apart_from_energy_groups() -> None:
    import inspect

    from ekdcli.api import Evaluation, evaluate

    result = Evaluation(targets=[], groups=[{"label": "kd", "n": 3}], split="test")
    assert result.configurations is result.groups
    assert "energy_groups" in inspect.signature(evaluate).parameters
    assert "configuration" in (Evaluation.__doc__ or "") and "energy_groups" in (Evaluation.__doc__ or "")
