"""`ekd score --limit-train N` and what a subset score file means to later runs.

A sample's energy depends on that sample alone, so the first N rows of a full score file are the
scores of the first N samples; a file of the first N serves a run on the first M <= N, and a run
that needs more samples scores again and replaces it (docs/method.md#scoring).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ekdcli.jobs.build import build_model
from ekdcli.method.scoring import load_scores
from ekdcli.store.weights import load_tensors, save_tensors, weights_sha256

CONFIG = """
data = "fake"
teacher = "resnet8"
student = "tiny_cnn"
recipe = "quick"

[data_options]
n_train = 160
n_test = 32
num_classes = 5
seed = 7
"""
DATA_KEY = "fake-n_test32-n_train160-num_classes5-seed7"
N = 160


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ekd.toml").write_text(f'store = "{tmp_path / "store"}"\n' + CONFIG)
    torch.manual_seed(0)
    model = build_model("resnet8", 5, 3)
    meta = {"format": "ekd-weights", "arch": "resnet8", "dataset": DATA_KEY, "num_classes": 5}
    save_tensors(tmp_path / "store" / "models" / DATA_KEY / "resnet8.safetensors", model.state_dict(), meta)
    return tmp_path


def scores(ws: Path) -> Path:
    return ws / "store" / "scores" / DATA_KEY / "resnet8.safetensors"


def fingerprint(teacher_sha: str, data_fp: str, limit: int | None) -> str:
    """The score fingerprint, written out: sha256 of "sha|data|T_E[|first N]"."""
    key = f"{teacher_sha}|{data_fp}|4.0" + (f"|first {limit}" if limit is not None else "")
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def test_a_subset_is_scored_recorded_and_replaced_by_a_full_run(ws: Path, ekd: Any) -> None:
    code, out, err = ekd("score", "--limit-train", "40", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["computed"] is True and result["limit_train"] == 40 and result["train_samples"] == N
    subset = load_scores(scores(ws))
    assert subset.n == 40 and subset.meta.limit_train == 40
    _, meta = load_tensors(scores(ws))
    assert json.loads(meta["limit_train"]) == 40 and json.loads(meta["n"]) == 40
    # the dataset fingerprint stays the whole training split's; the score fingerprint names the subset
    from ekd_plugins.datasets.fake import fake

    data = fake(n_train=160, n_test=32, num_classes=5, seed=7)
    sha = weights_sha256(ws / "store" / "models" / DATA_KEY / "resnet8.safetensors")
    assert subset.meta.dataset_fingerprint == data.fingerprint("train")
    assert subset.fingerprint == fingerprint(sha, data.fingerprint("train"), 40)
    assert subset.labels.tolist() == data.train_labels[:40].tolist()
    assert result["summary"]["n"] == 40 and result["summary"]["limit_train"] == 40
    # a partition of the subset: its 40 samples, with the figures of their images
    code, out, err = ekd("partition", "--rate", "0.2", "--json")
    assert code == 0, err
    parted = json.loads(out)
    assert sum(parted["counts"].values()) == 40 and Path(parted["files"]["grid"]).is_file()

    # a full run does not take the subset for complete scores: it scores all 160 and replaces it
    code, out, err = ekd("score", "--json")
    assert code == 0, err
    assert json.loads(out)["computed"] is True and "holds the first 40 training samples only" in err
    full = load_scores(scores(ws))
    assert full.n == N and full.meta.limit_train is None
    assert full.fingerprint == fingerprint(sha, data.fingerprint("train"), None)
    # the energies of the first 40 do not depend on the other samples
    np.testing.assert_allclose(full.energies[:40].numpy(), subset.energies.numpy(), rtol=1e-5, atol=1e-5)


def test_a_smaller_subset_reads_the_first_rows_of_a_larger_file(ws: Path, ekd: Any) -> None:
    assert ekd("score", "--quiet")[0] == 0
    before = scores(ws).read_bytes()
    code, out, err = ekd("score", "--limit-train", "30", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["computed"] is False and "its first 30 rows" in err
    assert scores(ws).read_bytes() == before  # the full file stays as it is
    assert Path(result["histogram"]).name == "resnet8.first30.png" and Path(result["histogram"]).is_file()
    table = load_scores(scores(ws))
    e = table.energies[:30].double().numpy()
    summary = result["summary"]
    assert summary["n"] == 30
    assert summary["energy"]["median"] == pytest.approx(float(np.quantile(e, 0.5)))
    assert summary["energy"]["q10"] == pytest.approx(float(np.quantile(e, 0.10)))
    assert summary["energy"]["q90"] == pytest.approx(float(np.quantile(e, 0.90)))
    correct = (table.predictions[:30] == table.labels[:30]).double().mean()
    assert summary["accuracy"] == pytest.approx(float(correct))
    k = math.floor(30 * 0.2)
    assert summary["low"]["count"] == summary["high"]["count"] == k
    assert "q10" in out and "q90" in out


def test_distill_with_a_limit_uses_the_first_rows_and_counts_what_it_trains_on(ws: Path, ekd: Any) -> None:
    assert ekd("score", "--quiet")[0] == 0
    full = load_scores(scores(ws))
    code, out, err = ekd("distill", "--method", "energy_kd", "--limit-train", "50", "--epochs", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    rule = result["objective"]["distiller"]
    # the groups and thresholds are those of the 50 samples the run trains on (released indexing)
    e = np.sort(full.energies[:50].double().numpy())
    k = math.floor(50 * 0.2)
    assert rule["thresholds"]["low"] == pytest.approx(e[k]) and rule["thresholds"]["high"] == pytest.approx(
        e[50 - k - 1]
    )
    assert sum(rule["train_counts"].values()) == 50
    assert result["objective"]["score_fingerprint"] == fingerprint(
        full.meta.teacher_sha256, full.meta.dataset_fingerprint, 50
    )
    assert "the first 50 of 160 training images" in err
    assert load_scores(scores(ws)).n == N  # the full file was read, not replaced
