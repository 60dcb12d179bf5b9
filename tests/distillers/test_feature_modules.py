"""VID, OFD, CRD and ReviewKD against mdistiller, plus independent checks of their formulas.

How the reference numbers were made (tests/distillers/data/mdistiller_feature_modules.json): a
script outside the repository (not committed) imported mdistiller at commit a08d46f and this
directory's feature_modules_cases.py.  For each method it built ekd's distiller bound to stub models
(which return the seeded float64 features of resnet32x4 -> resnet8x4 at 32x32, batch 8), seeded
every floating entry of ekd's module state, built mdistiller's distiller on stubs returning the
same features (cfg defaults and configs/cifar100/*.yaml: REVIEWKD_WEIGHT 5; CRD with NCE.K 64 over
200 samples of 10 classes and the explicit contrast indices of ``contrast_idx()``), loaded ekd's
state dict into it with ``strict=True``, ran its ``forward_train`` (epoch 5), backpropagated the
summed loss and stored the loss terms, summaries (sum, sum of squares, seeded projection) of the
gradients of every module parameter and of the student's features, CRD's buffers after the
step, mdistiller's own state-dict keys and shapes, and OFD's margins (from scipy's norm.cdf).
VID differs by ~1e-7 relative: mdistiller keeps its log-scales in float32 outside the module.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import feature_modules_cases as cases
import pytest
import torch
import torch.nn.functional as F
from ekd_plugins.distillers.feature.crd import CRDDistiller, make_crd, nce_loss
from ekd_plugins.distillers.feature.crd_sampling import contrast_indices
from ekd_plugins.distillers.feature.ofd import bn_margins
from ekd_plugins.distillers.feature.reviewkd import hcl_loss, make_reviewkd
from ekd_plugins.distillers.feature.vid import make_vid
from torch import nn

from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import defaults

REF = json.loads((Path(__file__).parent / "data" / "mdistiller_feature_modules.json").read_text())
METHODS = ("vid", "ofd", "crd", "reviewkd")


def assert_close(ours: Any, theirs: Any, where: str) -> None:
    ours_list = ours if isinstance(ours, list) else [ours]
    theirs_list = theirs if isinstance(theirs, list) else [theirs]
    assert len(ours_list) == len(theirs_list), where
    for a, b in zip(ours_list, theirs_list, strict=True):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {a} != {b}"


@functools.cache
def ekd_run(method: str) -> dict[str, Any]:
    return cases.run_ekd(method)


# ReviewKD's float64 forward/backward (512 mid channels at 32x32) takes ~10 s on a shared CPU.
EQUALITY = [*METHODS[:3], pytest.param("reviewkd", marks=pytest.mark.slow)]


@pytest.mark.parametrize("method", EQUALITY)
@pytest.mark.parametrize("section", ["losses", "param_grads", "feature_grads", "state_after"])
def test_equals_mdistiller(method: str, section: str) -> None:
    ours, theirs = ekd_run(method)[section], REF[method][section]
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert_close(ours[key], theirs[key], f"{method} {section} {key}")


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_names_and_shapes_are_mdistillers(method: str) -> None:
    modules = cases.build_ekd(method).modules
    assert {k: list(v.shape) for k, v in modules.state_dict().items()} == REF[method]["state_keys"]
    assert sorted(n for n, _ in modules.named_parameters()) == REF[method]["learnable"]


def test_ofd_margins_are_mdistillers() -> None:
    bns = cases.teacher_bns()
    for bn, theirs in zip(bns, REF["ofd"]["margins"], strict=True):
        ours = bn_margins(bn).flatten().tolist()
        assert any(m == pytest.approx(-3 * abs(w)) for m, w in zip(ours, bn.weight.tolist(), strict=True))
        for a, b in zip(ours, theirs, strict=True):
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def test_ofd_margin_is_the_truncated_normal_mean() -> None:
    """Independent check: E[x | x < 0] of N(m, s^2) by numerical integration equals the margin."""
    bn = nn.BatchNorm2d(2)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.7, -1.3]))
        bn.bias.copy_(torch.tensor([0.4, -0.2]))
    margins = bn_margins(bn).flatten().tolist()
    for (s, m), margin in zip([(0.7, 0.4), (1.3, -0.2)], margins, strict=True):
        xs = [-12 * s + i * (12 * s) / 200000 for i in range(200001)]  # x from -12s to 0
        dens = [math.exp(-((x - m) ** 2) / (2 * s * s)) for x in xs]
        mean_below = sum(x * d for x, d in zip(xs, dens, strict=True)) / sum(dens)
        assert margin == pytest.approx(mean_below, rel=1e-4)


def test_crd_nce_loss_written_out() -> None:
    scores = torch.tensor([[[0.9], [0.2], [0.05]], [[0.3], [0.6], [0.1]]], dtype=torch.float64)
    n, k, eps = 50, 2, 1e-7
    c = k / n
    expected = 0.0
    for row in scores[:, :, 0].tolist():
        expected += math.log(row[0] / (row[0] + c + eps))
        expected += sum(math.log(c / (p + c + eps)) for p in row[1:])
    assert float(nce_loss(scores, n)) == pytest.approx(-expected / 2, rel=1e-12)


def test_crd_bank_update_moves_only_the_batch_rows() -> None:
    distiller = cases.build_ekd("crd")
    contrast = distiller.modules.contrast
    before_v1 = contrast.memory_v1.clone()
    fixed = cases.contrast_idx()
    v1 = F.normalize(cases.randn(5, cases.BATCH, 128), dim=1)
    v2 = F.normalize(cases.randn(6, cases.BATCH, 128), dim=1)
    index = cases.batch_indices()
    contrast(v1, v2, index, fixed)
    rows = 0.5 * before_v1[index] + 0.5 * v1
    expected = rows / rows.norm(dim=1, keepdim=True)
    assert torch.allclose(contrast.memory_v1[index], expected, rtol=1e-12, atol=1e-14)
    others = torch.ones(cases.TRAIN_SIZE, dtype=torch.bool)
    others[index] = False
    assert torch.equal(contrast.memory_v1[others], before_v1[others])
    # Z_v1 / Z_v2 were set from this first batch and stay put afterwards.
    z = contrast.params[2:4].clone()
    assert (z > 0).all()
    contrast(v1, v2, index, fixed)
    assert torch.equal(contrast.params[2:4], z)


def test_reviewkd_hcl_written_out() -> None:
    fs = cases.randn(7, 2, 3, 4, 4)
    ft = cases.randn(8, 2, 3, 4, 4)

    def mse(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a - b) ** 2).mean())

    def pool(x: torch.Tensor, size: int) -> torch.Tensor:
        step = x.shape[-1] // size
        return x.unfold(2, step, step).unfold(3, step, step).mean(dim=(-1, -2))

    # 4x4 maps: the 4x4 pool is skipped (4 >= h); 2x2 at 1/2, 1x1 at 1/4; divided by 1.75.
    level = (mse(fs, ft) + 0.5 * mse(pool(fs, 2), pool(ft, 2)) + 0.25 * mse(pool(fs, 1), pool(ft, 1))) / 1.75
    pooled_s, pooled_t = cases.randn(9, 2, 5, 1, 1), cases.randn(10, 2, 5, 1, 1)
    assert float(hcl_loss([fs, pooled_s], [ft, pooled_t])) == pytest.approx(
        level + mse(pooled_s, pooled_t), rel=1e-12
    )


def test_vid_variance_starts_at_init_pred_var() -> None:
    modules = make_vid(init_pred_var=3.0).__class__  # the factory validates; bind builds
    distiller = cases.build_ekd("vid", init_pred_var=3.0)
    for i in range(3):
        var = F.softplus(distiller.modules.log_scale(i)) + distiller.eps
        assert torch.allclose(var, torch.full_like(var, 3.0), rtol=1e-6)
    assert modules.name == "vid"
    with pytest.raises(UsageError, match="init_pred_var"):
        make_vid(init_pred_var=1e-6)


# ----------------------------------------------------------------------------- sampling
def test_crd_draws_distinct_other_class_negatives_reproducibly() -> None:
    labels = cases.train_labels()
    index = cases.batch_indices()
    idx = contrast_indices(labels, index, 64, "exact", torch.Generator().manual_seed(3))
    again = contrast_indices(labels, index, 64, "exact", torch.Generator().manual_seed(3))
    other = contrast_indices(labels, index, 64, "exact", torch.Generator().manual_seed(4))
    assert idx.shape == (cases.BATCH, 65)
    assert torch.equal(idx, again) and not torch.equal(idx, other)
    assert torch.equal(idx[:, 0], index)
    for row in idx:
        negatives = row[1:]
        assert negatives.unique().numel() == 64
        assert (labels[negatives] != labels[row[0]]).all()


def test_crd_relax_positive_is_a_sample_of_the_same_class() -> None:
    labels = cases.train_labels()
    index = cases.batch_indices()
    idx = contrast_indices(labels, index, 16, "relax", torch.Generator().manual_seed(5))
    assert torch.equal(labels[idx[:, 0]], labels[index])
    assert not torch.equal(idx[:, 0], index)  # 20 samples a class: the sample itself is a rare draw


def test_crd_draws_negatives_uniformly() -> None:
    labels = torch.tensor([0] * 5 + [1] * 5)
    index = torch.zeros(4000, dtype=torch.long)  # sample 0 of class 0, drawn 4000 times
    idx = contrast_indices(labels, index, 2, "exact", torch.Generator().manual_seed(6))
    counts = torch.bincount(idx[:, 1:].flatten(), minlength=10)
    assert counts[:5].sum() == 0
    assert ((counts[5:] - 1600).abs() < 150).all()  # 8000 draws over 5 samples


def test_crd_refuses_more_negatives_than_the_training_set_has() -> None:
    distiller = make_crd()  # nce_k 16384 over 200 samples
    student = cases.StubModel(cases.logits(), cases.features(100))
    teacher = cases.StubModel(cases.logits(), cases.features(200))
    with pytest.raises(UsageError, match=r"nce_k=16384 .* only \d+ .* --set distiller.nce_k="):
        distiller.bind(cases.pair_context(student, teacher))


def test_crd_runs_with_the_engines_generator() -> None:
    from ekdcli.sdk.contracts import DistillBatch, Features

    distiller = cases.build_ekd("crd")
    assert isinstance(distiller, CRDDistiller)
    student, teacher = cases.features(100), cases.features(200)
    batch = DistillBatch(
        student_logits=cases.logits(),
        teacher_logits=None,
        labels=cases.batch_labels("crd"),
        indices=cases.batch_indices(),
        epoch=1,
        student_features=Features(**student),
        teacher_features=Features(**teacher),
        generator=torch.Generator().manual_seed(0),
    )
    losses = distiller(batch)
    assert set(losses) == {"loss_ce", "loss_feat"} and torch.isfinite(losses["loss_feat"])


# ----------------------------------------------------------------------------- binding
def test_reviewkd_derives_mdistillers_values_for_resnet32x4_resnet8x4() -> None:
    distiller = cases.build_ekd("reviewkd")
    layout = distiller.layout
    assert layout.shapes == [1, 8, 16, 32] and layout.out_shapes == [1, 8, 16, 32]
    assert layout.in_channels == [64, 128, 256, 256] and layout.out_channels == [64, 128, 256, 256]
    assert (layout.w_feat, layout.warmup, layout.stu_preact, layout.max_mid_channel) == (
        5.0,
        20.0,
        False,
        512,
    )


def test_reviewkd_options_override_and_are_checked() -> None:
    distiller = cases.build_ekd("reviewkd", w_feat=2.0, warmup="1", shapes="[1, 8, 16, 32]")
    assert (distiller.layout.w_feat, distiller.layout.warmup) == (2.0, 1.0)
    with pytest.raises(UsageError, match=r"option 'in_channels' .* \[64, 128, 256, 256\]"):
        cases.build_ekd("reviewkd", in_channels=[64, 128, 256, 512])
    with pytest.raises(UsageError, match="option 'shapes'"):
        make_reviewkd(shapes="one,two")
    with pytest.raises(UsageError, match="no option 'temperature'"):
        make_reviewkd(temperature=4)


class _BNModel(nn.Module):
    """A model whose batch norm would move if probed in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> Any:
        f0 = self.conv(x)
        f1 = self.bn(f0)
        pooled = f1.mean(dim=(2, 3))
        return pooled, {"feats": [f0, f1.relu()], "preact_feats": [f0, f1], "pooled_feat": pooled}


def test_bind_leaves_both_models_as_they_were() -> None:
    student, teacher = _BNModel(), _BNModel().eval()
    with torch.no_grad():
        student.bn.running_mean.fill_(0.3)
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m in (student, teacher)]
    distiller = make_vid()
    distiller.bind(cases.pair_context(student, teacher))
    assert student.training and not teacher.training
    for model, state in zip((student, teacher), states, strict=True):
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key
    assert [n for n, _ in distiller.modules.named_parameters()] == [
        "regressors.0.0.weight",
        "regressors.0.2.weight",
        "regressors.0.4.weight",
    ]


# ----------------------------------------------------------------------------- registration
def test_rows_register_the_four_methods_with_their_defaults() -> None:
    import importlib

    from ekd_plugins.distillers import distiller_table

    rows = {row[0]: row for row in distiller_table() if row[0] in METHODS}
    assert set(rows) == set(METHODS)
    for name, (_, factory, _, description, info) in rows.items():
        module, _, attr = factory.partition(":")
        distiller = getattr(importlib.import_module(module), attr)()
        assert distiller.name == name and description
        assert info["kind"] == "feature" and info["needs_teacher"] and not info["needs_energy"]
        assert "temperature_rule" not in info
        assert tuple(info["features"]) == distiller.features
        assert tuple(info["model_hooks"]) == distiller.model_hooks
        assert info.get("single_process", False) is (name == "crd")
    crd = defaults(rows["crd"][4]["options"])  # the rows hold option records
    assert crd == {
        "w_ce": 1.0,
        "w_feat": 0.8,
        "mode": "exact",
        "feat_dim": 128,
        "nce_k": 16384,
        "nce_momentum": 0.5,
        "nce_t": 0.07,
    }
    assert defaults(rows["vid"][4]["options"]) == {
        "w_ce": 1.0,
        "w_feat": 1.0,
        "eps": 1e-5,
        "init_pred_var": 5.0,
    }
    assert defaults(rows["ofd"][4]["options"])["connector_kernel"] == 1
    with pytest.raises(UsageError, match="option 'mode' of distiller 'crd' must be one of exact, relax"):
        make_crd(mode="loose")
