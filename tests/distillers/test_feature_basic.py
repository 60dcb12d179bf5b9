"""FitNet, AT, PKT, RKD, SP, NST and KDSVD: equal to mdistiller's, and to their formulas.

How the reference numbers (data/mdistiller_feature_basic.json) were made: a script kept outside
the repository imported mdistiller (commit a08d46f) and this directory's feature_basic_inputs.py;
for each case of ``CASES`` it built mdistiller's own distiller class (FitNet, AT, ...) from
mdistiller's ``engine/cfg.py`` defaults (with the case's options set on the config), with a
student and a teacher replaced by stubs that return the seeded logits and features; for FitNet it
loaded ekd's seeded regressor state dict into ``conv_reg`` with ``strict=True`` (and recorded the
distiller's state-dict keys and shapes without ``student.``/``teacher.``); it ran
``forward_train``, back-propagated ``loss_ce + loss_kd`` and recorded both losses and
``gradient_summary`` of the student's logits, features and the regressor's parameters.  It also
recorded mdistiller's default options.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import feature_basic_inputs as fi
import pytest
import torch
import torch.nn.functional as F
from ekd_plugins.distillers import distiller_table
from ekd_plugins.distillers.feature import options_basic
from torch import nn

from ekdcli.sdk.contracts import DistillBatch, Features, PairContext
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import defaults

REFERENCE = json.loads((Path(__file__).parent / "data" / "mdistiller_feature_basic.json").read_text())
METHODS = ("fitnet", "at", "pkt", "rkd", "sp", "nst", "kdsvd")
ROWS = {row[0]: row for row in distiller_table()}
TOL = 1e-6


def make(method: str, **options: Any) -> Any:
    module, attr = ROWS[method][1].split(":")
    return getattr(importlib.import_module(module), attr)(**options)


def pair_of(setting: str, student: nn.Module | None = None, teacher: nn.Module | None = None) -> PairContext:
    spec = fi.SETTINGS[setting]
    return PairContext(
        student=student or fi.StubModel(*spec["student"]),
        teacher=teacher or fi.StubModel(*spec["teacher"]),
        student_name="student",
        teacher_name="teacher",
        num_classes=fi.CLASSES,
        in_channels=3,
        image_size=(32, 32),
        train_size=fi.BATCH,
        train_labels=torch.zeros(fi.BATCH, dtype=torch.long),
    )


def batch_of(inputs: dict[str, Any]) -> DistillBatch:
    return DistillBatch(
        student_logits=inputs["logits"],
        teacher_logits=inputs["teacher_logits"],
        labels=inputs["labels"],
        indices=torch.arange(fi.BATCH),
        epoch=1,
        student_features=inputs["student"],
        teacher_features=inputs["teacher"],
    )


def close(value: float, expected: float, scale: float = 0.0) -> bool:
    return math.isclose(value, expected, rel_tol=TOL, abs_tol=TOL * scale)


# ------------------------------------------------------------------ mdistiller
def test_defaults_are_mdistillers() -> None:
    for method in METHODS:
        ours = getattr(options_basic, f"{method.upper()}_OPTIONS")
        assert ours == REFERENCE["defaults"][method], method
        assert defaults(ROWS[method][4]["options"]) == ours  # the row's option record


@pytest.mark.parametrize("index", range(len(fi.CASES)), ids=[c[0] for c in fi.CASES])
def test_equal_to_mdistiller(index: int) -> None:
    case_id, method, setting, options, dtype = fi.CASES[index]
    expected = REFERENCE["cases"][case_id]
    inputs = fi.seeded_inputs(setting, getattr(torch, dtype))
    distiller = make(method, **options)
    distiller.bind(pair_of(setting))
    params: dict[str, torch.Tensor] = {}
    if method == "fitnet":
        modules = distiller.modules
        assert [[k, list(v.shape)] for k, v in modules.state_dict().items()] == expected["state_dict"]
        modules.load_state_dict(fi.seeded_connector_state(modules, 1000 + index))
        modules.double().train()
        params = dict(modules.named_parameters())
    else:
        assert distiller.parameters() == []
    losses = distiller(batch_of(inputs))
    assert sorted(losses) == ["loss_ce", "loss_feat"]
    assert all(v.dim() == 0 for v in losses.values())
    assert close(float(losses["loss_ce"].detach()), expected["loss_ce"])
    assert close(float(losses["loss_feat"].detach()), expected["loss_feat"])
    (losses["loss_ce"] + losses["loss_feat"]).backward()
    ours = fi.gradient_summary(inputs, params, 2000 + index)
    assert sorted(ours) == sorted(expected["grads"])
    for name, stats in expected["grads"].items():
        # A sum or a projection of n entries is bounded by norm * sqrt(n): the scale of its error.
        scale = stats["norm"] * math.sqrt(_numel(inputs, params, name))
        for key in ("norm", "dot", "sum"):
            assert close(ours[name][key], stats[key], scale), (name, key, ours[name][key], stats[key])


def _numel(inputs: dict[str, Any], params: dict[str, torch.Tensor], name: str) -> int:
    student = inputs["student"]
    if name in params:
        return params[name].numel()
    if name == "logits":
        return inputs["logits"].numel()
    if name == "pooled_feat":
        return student.pooled_feat.numel()
    kind, i = name.split(".")
    return getattr(student, kind)[int(i)].numel()


# ------------------------------------------------------------- the formulas
def features(feats: list[torch.Tensor], pooled: torch.Tensor | None = None) -> Features:
    return Features(feats, feats, pooled if pooled is not None else feats[-1].mean(dim=(2, 3)))


def feature_loss(method: str, student: Features, teacher: Features, **options: Any) -> float:
    return float(make(method, **options).feature_loss(student, teacher).detach())


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_at_is_the_mean_squared_difference_of_normalized_attention_maps() -> None:
    s = [rand(3, 4, 6, 6, seed=0), rand(3, 5, 6, 6, seed=1), rand(3, 6, 4, 4, seed=2)]
    t = [rand(3, 7, 6, 6, seed=3), rand(3, 8, 6, 6, seed=4), rand(3, 9, 2, 2, seed=5)]
    expected = 0.0
    for f_s, f_t in zip(s[1:], t[1:], strict=True):
        if f_s.shape[2] != f_t.shape[2]:  # 4x4 student map: means of 2x2 blocks
            f_s = f_s.reshape(3, 6, 2, 2, 2, 2).mean(dim=(3, 5))
        maps = []
        for f in (f_s, f_t):
            a = (f**2).sum(dim=1).reshape(3, -1) / f.shape[1]
            maps.append(a / a.norm(dim=1, keepdim=True))
        expected += float(((maps[0] - maps[1]) ** 2).sum()) / maps[0].numel()
    assert close(feature_loss("at", features(s), features(t)), expected)


def test_pkt_is_the_kl_of_cosine_similarity_distributions() -> None:
    f_s, f_t = rand(5, 7, seed=0), rand(5, 3, seed=1)

    def distribution(f: torch.Tensor) -> list[list[float]]:
        n = [float(f[i].norm()) for i in range(5)]
        cos = [[float(f[i] @ f[j]) / ((n[i] + 1e-7) * (n[j] + 1e-7)) for j in range(5)] for i in range(5)]
        rows = [[(c + 1) / 2 for c in row] for row in cos]
        return [[v / sum(row) for v in row] for row in rows]

    q_s, q_t = distribution(f_s), distribution(f_t)
    expected = (
        sum(q_t[i][j] * math.log((q_t[i][j] + 1e-7) / (q_s[i][j] + 1e-7)) for i in range(5) for j in range(5))
        / 25
    )
    got = feature_loss("pkt", Features([], [], f_s), Features([], [], f_t))
    assert close(got, expected)


def _smooth_l1(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def test_rkd_is_smooth_l1_on_normalized_distances_and_angles() -> None:
    n = 4
    f_s, f_t = rand(n, 5, seed=0), rand(n, 6, seed=1)

    def relations(f: torch.Tensor) -> tuple[list[float], list[float]]:
        d = [[float((f[i] - f[j]).norm()) for j in range(n)] for i in range(n)]
        mean = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * n - n)
        dist = [d[i][j] / mean for i in range(n) for j in range(n)]
        angle = []
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    u, v = f[j] - f[i], f[k] - f[i]
                    nu, nv = max(float(u.norm()), 1e-12), max(float(v.norm()), 1e-12)
                    angle.append(float(u @ v) / (nu * nv))
        return dist, angle

    (d_s, a_s), (d_t, a_t) = relations(f_s), relations(f_t)
    loss_d = sum(_smooth_l1(a - b) for a, b in zip(d_s, d_t, strict=True)) / len(d_s)
    loss_a = sum(_smooth_l1(a - b) for a, b in zip(a_s, a_t, strict=True)) / len(a_s)
    got = feature_loss("rkd", Features([], [], f_s), Features([], [], f_t), distance_weight=2, angle_weight=3)
    assert close(got, 2 * loss_d + 3 * loss_a)


def test_sp_is_the_distance_of_row_normalized_gram_matrices() -> None:
    f_s, f_t = rand(4, 3, 2, 2, seed=0), rand(4, 5, 2, 2, seed=1)

    def gram(f: torch.Tensor) -> torch.Tensor:
        flat = f.reshape(4, -1)
        g = torch.tensor(
            [[float(flat[i] @ flat[j]) for j in range(4)] for i in range(4)], dtype=torch.float64
        )
        return g / g.norm(dim=1, keepdim=True)

    expected = float(((gram(f_t) - gram(f_s)) ** 2).sum()) / 16
    assert close(feature_loss("sp", features([f_s]), features([f_t])), expected)


def test_nst_is_the_polynomial_kernel_mmd_of_normalized_channel_maps() -> None:
    s = [rand(2, 3, 4, 4, seed=0), rand(2, 3, 4, 4, seed=1)]
    t = [rand(2, 5, 4, 4, seed=2), rand(2, 4, 4, 4, seed=3)]
    f_s, f_t = s[1].reshape(2, 3, -1), t[1].reshape(2, 4, -1)
    f_s, f_t = f_s / f_s.norm(dim=2, keepdim=True), f_t / f_t.norm(dim=2, keepdim=True)

    def k(a: torch.Tensor, b: torch.Tensor) -> float:  # mean over samples and channel pairs of <a_i, b_j>^2
        return float((a @ b.transpose(1, 2)).pow(2).mean())

    expected = k(f_t, f_t) + k(f_s, f_s) - 2 * k(f_s, f_t)
    assert close(feature_loss("nst", features(s), features(t)), expected)


def test_fitnet_is_the_mse_of_the_regressed_hint() -> None:
    distiller = make("fitnet", hint_layer=1)
    distiller.bind(pair_of("synthetic"))  # student 16x16 -> teacher 8x8: a stride-2 3x3 convolution
    regressor = distiller.modules.conv_reg.double().train()
    conv = regressor.conv
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (2, 2), (1, 1))
    inputs = fi.seeded_inputs("synthetic", torch.float64)
    hint, target = inputs["student"].feats[1], inputs["teacher"].feats[1]
    out = F.conv2d(hint, conv.weight, conv.bias, stride=2, padding=1)
    mean, var = out.mean(dim=(0, 2, 3), keepdim=True), out.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    bn = regressor.bn
    out = ((out - mean) / torch.sqrt(var + bn.eps)) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    expected = float(((out.clamp(min=0) - target) ** 2).mean().detach())
    assert close(float(distiller.feature_loss(inputs["student"], inputs["teacher"]).detach()), expected)


def test_kdsvd_is_zero_when_the_student_has_the_teachers_features() -> None:
    inputs = fi.seeded_inputs("synthetic", torch.float64)
    teacher = inputs["teacher"]
    assert feature_loss("kdsvd", teacher, teacher) == pytest.approx(0.0, abs=1e-20)
    noisy = features([f + 0.1 * rand(*f.shape, seed=i) for i, f in enumerate(teacher.feats)])
    assert feature_loss("kdsvd", noisy, teacher) > 1e-10


def test_losses_are_weighted() -> None:
    inputs = fi.seeded_inputs("resnet32x4_resnet8x4", torch.float64)
    plain, heavy = make("sp", w_ce=1, w_feat=1), make("sp", w_ce=0.5, w_feat=7)
    a, b = plain(batch_of(inputs)), heavy(batch_of(inputs))
    a, b = {k: float(v.detach()) for k, v in a.items()}, {k: float(v.detach()) for k, v in b.items()}
    assert close(b["loss_ce"], 0.5 * a["loss_ce"])
    assert close(b["loss_feat"], 7 * a["loss_feat"])
    assert close(a["loss_ce"], float(F.cross_entropy(inputs["logits"].detach(), inputs["labels"])))


@pytest.mark.parametrize("method", METHODS)
def test_losses_run_in_float32_under_autocast(method: str) -> None:
    """The engine calls distillers under autocast; the losses' matrix products must not drop to bf16."""
    inputs = fi.seeded_inputs("resnet32x4_resnet8x4", torch.float32)
    distiller = make(method)
    distiller.bind(pair_of("resnet32x4_resnet8x4"))
    plain = distiller(batch_of(inputs))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = distiller(batch_of(inputs))
    for key, value in plain.items():
        assert mixed[key].dtype == torch.float32
        assert close(float(mixed[key].detach()), float(value.detach())), key


# ------------------------------------------------------------- binding
class TinyNet(nn.Module):
    """Two stages with batch norm: the probe must not touch their running statistics."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.stage = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.fc = nn.Linear(width, fi.CLASSES)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> Any:
        f0 = self.stem(x)
        f1 = self.stage(f0)
        pooled = f1.mean(dim=(2, 3))
        logits = self.fc(pooled)
        return (
            (logits, {"feats": [f0, f1], "preact_feats": [f0, f1], "pooled_feat": pooled})
            if return_features
            else logits
        )


def test_the_shape_probe_leaves_both_models_as_they_were() -> None:
    student, teacher = TinyNet(4).train(), TinyNet(6).eval()
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (student, teacher)]
    distiller = make("fitnet", hint_layer=1)
    distiller.bind(pair_of("synthetic", student, teacher))
    assert student.training and not teacher.training
    for model, state in zip((student, teacher), before, strict=True):
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert distiller.modules.conv_reg.conv.weight.shape == (6, 4, 1, 1)


def test_bind_refuses_what_mdistiller_cannot_regress() -> None:
    with pytest.raises(UsageError, match="'hint_layer' of distiller 'fitnet' is 5"):
        make("fitnet", hint_layer=5).bind(pair_of("resnet32x4_resnet8x4"))
    with pytest.raises(UsageError, match=r"cannot regress student's hint map of size \(12, 12\)"):
        make("fitnet", hint_layer=2).bind(
            pair_of("synthetic", teacher=fi.StubModel([(3, 4, 4)] * 2 + [(4, 32, 32)], 4))
        )
    with pytest.raises(UsageError, match="stage 4 of student is 2 wide and teacher's is 4"):
        make("kdsvd").bind(pair_of("vgg13_mobilenetv2"))
    with pytest.raises(UsageError, match="needs a teacher"):
        make("at").bind(pair_of("synthetic").__class__(**{**vars(pair_of("synthetic")), "teacher": None}))


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("fitnet", {"hint_layer": -1}, "option 'hint_layer' of distiller 'fitnet' must be at least 0"),
        ("at", {"p": "two"}, "option 'p' of distiller 'at' must be a number"),
        (
            "rkd",
            {"pdist_squared": "maybe"},
            "option 'pdist_squared' of distiller 'rkd' must be true or false",
        ),
        ("rkd", {"pdist_eps": 0}, "option 'pdist_eps' of distiller 'rkd' must be greater than 0"),
        ("kdsvd", {"k": 0}, "option 'k' of distiller 'kdsvd' must be at least 1"),
        ("pkt", {"w_feat": -1}, "option 'w_feat' of distiller 'pkt' must be 0 or more"),
        ("sp", {"temperature": 4}, "distiller 'sp' has no option 'temperature'"),
    ],
)
def test_bad_options_are_one_sentence(method: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make(method, **options)


def test_registry_rows() -> None:
    for method in METHODS:
        info = ROWS[method][4]
        assert info["kind"] == "feature" and info["needs_teacher"] and not info["needs_energy"]
        assert "temperature_rule" not in info and info["model_hooks"] == []
        assert tuple(info["features"]) == make(method).features
    assert ROWS["pkt"][4]["features"] == ["pooled_feat"] and ROWS["fitnet"][4]["features"] == ["feats"]
