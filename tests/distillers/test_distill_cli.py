"""`ekd distill`: bad input writes nothing anywhere; every method really trains on the embedded digits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ekdcli.jobs.build import build_model
from ekdcli.method.scoring import load_scores
from ekdcli.store.weights import save_tensors

FAKE = """
data = "fake"
teacher = "resnet8"
student = "tiny_cnn"
recipe = "quick"

[data_options]
n_train = 96
n_test = 32
num_classes = 5
seed = 1
"""
FAKE_KEY = "fake-n_test32-n_train96-num_classes5-seed1"
# digits at 8x8 pixels (their native size): fast enough to train a real teacher in a test
DIGITS = ["--set", "data_options.size=8", "--lr", "0.2", "--batch-size", "64"]
DIGITS_KEY = "digits-size8"


def write_teacher(path: Path, data_key: str, num_classes: int) -> Path:
    torch.manual_seed(0)
    model = build_model("resnet8", num_classes, 3)
    meta = {"format": "ekd-weights", "arch": "resnet8", "dataset": data_key, "num_classes": num_classes}
    save_tensors(path, {k: v.detach().clone() for k, v in model.state_dict().items()}, meta)
    return path


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def fake_ws(tmp_path: Path) -> Path:
    (tmp_path / "ekd.toml").write_text(f'store = "{tmp_path / "store"}"\n' + FAKE)
    write_teacher(tmp_path / "store" / "models" / FAKE_KEY / "resnet8.safetensors", FAKE_KEY, 5)
    write_teacher(tmp_path / "three.safetensors", FAKE_KEY, 3)  # a teacher of another class count
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--method", "nope"],
            "valid methods are: at, ce, crd, ctkd, dkd, energy_dkd, energy_kd, fitnet, kd, kdsvd, mlkd, nst, ofd, pkt, reviewkd, rkd, sp, vid.",
        ),
        (["--method", "energy_kdd"], "Did you mean 'energy_kd'"),
        (
            ["--set", "energy.preset=offical"],
            "'preset' of temperature rule 'energy' must be one of paper, official",
        ),
        (["--set", "energy.source=dynamic"], "must be one of static, online"),
        (
            ["--method", "kd", "--set", "distiller.t=0"],
            "'t' of temperature rule 'fixed' must be greater than 0",
        ),
        (
            ["--method", "dkd", "--set", "distiller.t=-4"],
            "'t' of temperature rule 'fixed' must be greater than 0",
        ),
        (["--set", "energy.t_mid=0"], "'t_mid' of temperature rule 'energy' must be greater than 0"),
        (
            ["--set", "energy.t_high_energy=-1"],
            "'t_high_energy' of temperature rule 'energy' must be greater than 0",
        ),
        (["--set", "energy.t_minus=-4"], "t + t_minus = 0"),
        (
            ["--method", "energy_dkd", "--set", "energy.t_min=0"],
            "'t_min' of temperature rule 'energy' must be greater",
        ),
        (["--energy-temperature", "0"], "energy"),
        (["--rate", "1.5"], "--rate must be in (0, 0.5]"),  # the energy rule's rates: both sides
        (["--low-rate", "0"], "'low_rate' of temperature rule 'energy' must be in (0, 1)"),
        (["--low-rate", "0.7", "--high-rate", "0.5"], "must be at most 1"),
        (["--segments", "1"], "'segments' of temperature rule 'energy' must be at least 2"),
        (["--segments", "10", "--apply", "low"], "cannot be combined with 'segments'"),
        (["--method", "kd", "--rate", "0.2"], "uses energies"),
        (["--student", "nonsense"], "unknown model 'nonsense'"),
        (["--student", "missing.safetensors"], "no student weights file at missing.safetensors"),
        (["--teacher", "THREE"], "predicts 3 classes but data"),
        (["--method", "kd", "--teacher", "THREE"], "predicts 3 classes but data"),
    ],
)
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(
    fake_ws: Path, ekd: Any, args: list[str], message: str
) -> None:
    args = [str(fake_ws / "three.safetensors") if a == "THREE" else a for a in args]
    before = files_under(fake_ws)
    code, out, err = ekd("distill", *args, "--epochs", "1")
    assert code == 2, (out, err)
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert files_under(fake_ws) == before  # no run directory, no score file, nothing


def test_unknown_preset_flag_lists_the_valid_ones(fake_ws: Path, ekd: Any) -> None:
    code, _, err = ekd("distill", "--preset", "nope")
    assert code == 2 and "'paper', 'official'" in err
    assert not (fake_ws / "store" / "runs").exists()


def test_unknown_student_with_the_default_pair_trains_no_teacher(tmp_path: Path, ekd: Any) -> None:
    code, out, err = ekd("distill", "--method", "kd", "--student", "nonsense", "--store", str(tmp_path / "s"))
    assert code == 2 and "unknown model 'nonsense'" in err
    assert files_under(tmp_path / "s") == []


def test_nothing_configured_uses_the_embedded_data_and_the_default_pair(tmp_path: Path, ekd: Any) -> None:
    store = tmp_path / "s"
    small = ["--limit-train", "64", "--limit-test", "32", "--set", "data_options.size=8"]
    code, out, err = ekd("distill", "--method", "kd", "--epochs", "1", "--store", str(store), *small)
    assert code == 0, err
    assert "using the default pair resnet32 -> resnet8 on digits" in out + err
    assert "training it first (1 epoch," in out + err
    assert (store / "models" / DIGITS_KEY / "resnet32.safetensors").is_file()
    assert len(list((store / "runs").glob("distill-kd-*"))) == 1


# ------------------------------------------------------------------ real runs on the digits
@pytest.fixture(scope="module")
def digits_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ekdcli.cli.main import main

    store = tmp_path_factory.mktemp("digits") / "store"
    try:
        main(["train", "--model", "resnet8", "--epochs", "3", "--store", str(store), "--quiet", *DIGITS])
    except SystemExit as exc:  # pragma: no cover - a failed teacher fails every test below
        assert exc.code in (0, None)
    return store


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("ce", []),
        ("kd", []),
        ("dkd", []),
        ("energy_kd", []),
        ("energy_kd", ["--preset", "official"]),
        ("energy_kd", ["--segments", "10"]),
        ("energy_dkd", []),
        ("kd", ["--logit-standardize"]),
        ("energy_dkd", ["--logit-standardize", "--source", "online", "--apply", "high"]),
    ],
)
def test_each_method_trains_a_student_above_chance(
    digits_store: Path, ekd: Any, method: str, extra: list[str]
) -> None:
    code, out, err = ekd(
        "distill", "--method", method, *extra, "--teacher", "resnet8", "--student", "tiny_cnn",
        "--epochs", "3", "--store", str(digits_store), "--json", "--quiet", *DIGITS,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    run = Path(result["run_dir"])
    for name in ("config.toml", "metrics.jsonl", "summary.json", "best.safetensors", "last.safetensors"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_top1"] > 0.20  # 10 digit classes: chance is 10%
    assert result["best_top1"] == pytest.approx(summary["best_top1"])
    for key in ("best_top5", "last_top1", "last_top5"):
        assert key in summary
    described = summary["objective"]["distiller"]
    assert described["method"] == method
    assert described.get("logit_standardize", False) is ("--logit-standardize" in extra)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    if not method.startswith("energy"):
        return
    scores = load_scores(digits_store / "scores" / DIGITS_KEY / "resnet8.safetensors")
    assert summary["objective"]["score_fingerprint"] == scores.fingerprint
    preset = "official" if "official" in extra else "paper"
    source = "online" if preset == "official" or "online" in extra else "static"
    assert (described["preset"], described["source"]) == (preset, source)
    temps = described["temperatures"]
    n_train = scores.n
    for record in records:  # each sample seen got one temperature (the last partial batch is dropped)
        counts = {k: v for k, v in record["stats"].items() if k.startswith("n_T")}
        assert n_train - 64 < sum(counts.values()) <= n_train
        assert set(counts) <= {f"n_T{t:g}" for t in (temps.values() if isinstance(temps, dict) else temps)}
    if "--segments" in extra:
        assert described["mode"] == "gradation" and len(temps) == 10 and len(described["segment_edges"]) == 9
        assert temps[0] == 6.0 and temps[-1] == 2.0  # paper preset: lowest energy = highest T
    else:
        low, high = (6.0, 2.0) if preset == "paper" else (2.0, 6.0)
        if "high" in extra:  # --apply high: only the high-energy side changes its temperature
            low = 4.0
        assert temps == {"low": low, "mid": 4.0, "high": high}
        assert described["thresholds"]["low"] < described["thresholds"]["high"]
        assert (described["low_rate"], described["high_rate"]) == (0.2, 0.2)


def test_an_empty_energy_group_is_said_out_loud(fake_ws: Path, ekd: Any) -> None:
    # With the released rule (E < E_low) a rate below 1/N leaves the low group empty.
    args = ["--method", "energy_kd", "--epochs", "1", "--low-rate", "0.001", "--high-rate", "0.2"]
    code, _, err = ekd("distill", *args, "--set", "energy.low_rule=released")
    assert code == 0, err
    assert "warning: no training sample fell in the low energy group(s)" in err
    code, _, err = ekd("distill", *args[:-4], "--low-rate", "0.2", "--high-rate", "0.2")
    assert code == 0 and "no training sample fell" not in err, err


def test_the_header_is_short_and_the_rule_printed_once(fake_ws: Path, ekd: Any) -> None:
    code, out, err = ekd("distill", "--method", "energy_kd", "--epochs", "1", "--limit-train", "48", "--json")
    assert code == 0, err
    result = json.loads(out)
    lines = [line for line in err.splitlines() if not line.startswith("scored the training set")]
    header = lines[: next(i for i, line in enumerate(lines) if line.startswith("  run directory")) + 1]
    assert (
        header[0]
        == f"ekd distill: energy_kd, resnet8 -> tiny_cnn on {FAKE_KEY} (the first 48 of 96 training images)"
    )
    assert [line.split(":")[0].strip() for line in header[1:]] == [
        "teacher",
        "rule",
        "recipe",
        "run directory",
    ]
    assert "T 6 / 4 / 2 for low / other / high energy, rates 0.2 / 0.2" in header[2]
    assert err.count("  rule: ") == 1 and "rule used" not in err and "loss: " not in err
    assert err.count(result["run_dir"]) == 1
    # the groups of the 48 images it trained on, once, at the end
    counts = result["objective"]["distiller"]["train_counts"]
    assert sum(counts.values()) == 48
    sizes = " / ".join(f"{group} {counts[group]}" for group in ("low", "mid", "high"))
    assert f"  energy groups of the training images: {sizes} (E_low " in err
    code, _, err = ekd(
        "distill", "--method", "energy_kd", "--epochs", "1", "--limit-train", "48", "--verbose"
    )
    assert code == 0 and "  loss: method=energy_kd, temperature_rule=energy, preset=paper" in err + _
