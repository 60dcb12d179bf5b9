"""MLKD against an independent float64 re-derivation of the authors' released loss (KD_ours.py), gradcheck.

The reference below is written from the released code's definitions with numpy loops: softmax
per row, the KL of each row at each temperature, the [K, K] and [B, B] correlation matrices
entry by entry, numpy's 50th percentile for the confidence masks.  Nothing of ekd is used.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ekd_plugins.distillers.mlkd import make_mlkd

from ekdcli.sdk.contracts import DistillBatch, TemperatureRule
from ekdcli.sdk.errors import JobError

B, K = 8, 5


def np64(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().numpy()


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def standardize(z: np.ndarray) -> np.ndarray:
    rows = []
    for row in z:
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
        rows.append([(v - mean) / (std + 1e-7) for v in row])
    return np.array(rows)


def ref_kd(s: np.ndarray, t: np.ndarray, temps: list[float]) -> float:
    total = 0.0
    for i in range(len(s)):
        p, q = softmax(t[i] / temps[i]), softmax(s[i] / temps[i])
        total += temps[i] ** 2 * sum(p[j] * math.log(p[j] / q[j]) for j in range(len(p)))
    return total / len(s)


def probs(z: np.ndarray, temps: list[float]) -> np.ndarray:
    return np.array([softmax(z[i] / temps[i]) for i in range(len(z))])


def ref_class(s: np.ndarray, t: np.ndarray, temps: list[float]) -> float:
    ps, pt = probs(s, temps), probs(t, temps)
    n, k = ps.shape
    total = 0.0
    for a in range(k):
        for b in range(k):
            gt = sum(pt[i][a] * pt[i][b] for i in range(n))
            gs = sum(ps[i][a] * ps[i][b] for i in range(n))
            total += (gt - gs) ** 2
    return total / k


def ref_batch(s: np.ndarray, t: np.ndarray, temps: list[float]) -> float:
    ps, pt = probs(s, temps), probs(t, temps)
    n = len(ps)
    total = 0.0
    for i in range(n):
        for j in range(n):
            total += (float(np.dot(pt[i], pt[j])) - float(np.dot(ps[i], ps[j]))) ** 2
    return total / n


def ref_ce(s: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([-math.log(softmax(s[i])[y[i]]) for i in range(len(s))]))


def reference(
    data: dict[str, torch.Tensor], base: list[float], standardize_kd: bool = False
) -> dict[str, float]:
    """The four released terms, with per-sample base temperatures ``base`` (4 for every row = MLKD's)."""
    sw, tw, ss, ts = (np64(data[k]) for k in ("sw", "tw", "ss", "ts"))
    y = data["y"].numpy()
    ladders = [[b * f for b in base] for f in (1.0, 0.75, 1.25, 0.5, 1.5)]  # 4, 3, 5, 2, 6
    pt = probs(tw, [1.0] * len(tw))
    confidence = pt.max(axis=1)
    m = float(np.mean(confidence <= np.percentile(confidence, 50)))
    per_class = pt.sum(axis=0)
    c = float(np.mean(per_class <= np.percentile(per_class, 50)))
    kw = (standardize(sw), standardize(tw)) if standardize_kd else (sw, tw)
    ks = (standardize(ss), standardize(ts)) if standardize_kd else (ss, ts)
    weak = sum(ref_kd(*kw, temps) for temps in ladders)
    strong = sum(ref_kd(*ks, temps) for temps in ladders[:3]) + sum(
        ref_kd(*kw, temps) for temps in ladders[3:]
    )
    return {
        "ce": 0.1 * (ref_ce(sw, y) + ref_ce(ss, y)),
        "kd": 0.9 * m * weak + 0.9 * strong,
        "cc": 0.9 * c * sum(ref_class(sw, tw, temps) for temps in ladders),
        "bc": 0.9 * m * sum(ref_batch(sw, tw, temps) for temps in ladders),
    }


@pytest.fixture
def data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.5, 4.0, B)[:, None]
    return {
        "sw": torch.randn(B, K, generator=g, dtype=torch.float64) * 2,
        "tw": torch.randn(B, K, generator=g, dtype=torch.float64) * scale,
        "ss": torch.randn(B, K, generator=g, dtype=torch.float64) * 2,
        "ts": torch.randn(B, K, generator=g, dtype=torch.float64) * scale,
        "y": torch.randint(0, K, (B,), generator=g),
    }


def batch(data: dict[str, torch.Tensor], sw: torch.Tensor | None = None, ss: torch.Tensor | None = None):  # noqa: ANN201
    return DistillBatch(
        data["sw"] if sw is None else sw,
        data["tw"],
        data["y"],
        torch.arange(B),
        5,
        {},
        data["ss"] if ss is None else ss,
        data["ts"],
    )


class PerRow(TemperatureRule):
    """A rule handing out given temperatures (a float32 tensor, as the energy rule does)."""

    name = "per_row"

    def __init__(self, temps: list[float]) -> None:
        self.temps = torch.tensor(temps)

    def __call__(self, teacher_logits, indices, stats):  # noqa: ANN001, ANN204
        return self.temps[indices]


def test_mlkd_matches_the_released_loss_at_its_five_temperatures(data) -> None:
    out = make_mlkd()(batch(data))
    want = reference(data, [4.0] * B)
    assert set(out) == {"ce", "kd", "cc", "bc"}
    for name, value in want.items():
        assert out[name].dtype == torch.float64
        assert out[name].item() == pytest.approx(value, rel=1e-10), name
    assert want["cc"] > 0 and want["bc"] > 0


def test_mlkd_with_per_sample_temperatures_from_a_rule(data) -> None:
    temps = [2.0, 4.0, 6.0, 4.0, 2.0, 6.0, 3.0, 5.0]
    out = make_mlkd(temperature_rule=PerRow(temps))(batch(data))
    want = reference(data, temps)
    for name, value in want.items():
        assert out[name].item() == pytest.approx(value, rel=1e-6), name  # float32 temperatures


def test_mlkd_logit_standardization_applies_to_the_instance_terms(data) -> None:
    out = make_mlkd(logit_standardize=True, t=2.0)(batch(data))
    want = reference(data, [2.0] * B, standardize_kd=True)
    for name, value in want.items():
        assert out[name].item() == pytest.approx(value, rel=1e-10), name


def test_confidence_masks_count_ties_with_numpy_percentiles() -> None:
    from ekd_plugins.distillers.mlkd import masked_fractions

    # rows 0-2 equally confident, row 3 more: the median is the tied value and all three count
    teacher = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    m, c = masked_fractions(teacher)
    assert m.item() == 0.75
    per_class = probs(teacher.numpy().astype(np.float64), [1.0] * 4).sum(axis=0)
    assert c.item() == pytest.approx(float(np.mean(per_class <= np.percentile(per_class, 50))))


def test_gradcheck_mlkd_in_both_views(data) -> None:
    small = {k: v[:4, :4] if v.dim() == 2 else v[:4] % 4 for k, v in data.items()}  # 32 inputs: fast
    d = make_mlkd(temperature_rule=PerRow([2.0, 4.0, 6.0, 3.0]))
    sw = small["sw"].clone().requires_grad_(True)
    ss = small["ss"].clone().requires_grad_(True)

    def terms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        step = DistillBatch(a, small["tw"], small["y"], torch.arange(4), 5, {}, b, small["ts"])
        return torch.stack(list(d(step).values()))

    assert torch.autograd.gradcheck(terms, (sw, ss))


def test_mlkd_without_a_strong_view_is_a_clear_error(data) -> None:
    plain = DistillBatch(data["sw"], data["tw"], data["y"], torch.arange(B), 1)
    with pytest.raises(JobError, match="got no strong view"):
        make_mlkd()(plain)


def test_mlkd_describes_its_rule_and_ladder() -> None:
    d = make_mlkd()
    assert d.needs_strong_view and not d.needs_energy
    desc = d.describe()
    assert desc["temperature_rule"] == "fixed" and desc["t"] == 4.0
    assert [4.0 * f for f in desc["ladder"]] == [4.0, 3.0, 5.0, 2.0, 6.0]


class Recorder(torch.nn.Module):
    """A model that records the batch sizes it is called with."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.model(x)


def test_the_engine_forwards_a_strong_view_teacher_once_student_twice() -> None:
    from ekdcli.engine.options import EngineOptions
    from ekdcli.engine.pipeline import make_batches
    from ekdcli.engine.runtime import Runtime
    from ekdcli.engine.strong import strong_view
    from ekdcli.engine.testing import TinyNet, synthetic_dataset
    from ekdcli.method.objective import DistillObjective

    torch.manual_seed(0)
    teacher, student = Recorder(TinyNet()), Recorder(TinyNet())
    runtime = Runtime(EngineOptions(device="cpu", quiet=True, channels_last=False))
    objective = DistillObjective(teacher, make_mlkd())
    objective.setup(runtime, 1)
    data = synthetic_dataset(train=32, test=8, size=8)
    batch = next(iter(make_batches(data, "train", runtime, 16, train=True, generator=torch.Generator())))
    out = objective(student, batch, 1, torch.Generator().manual_seed(3))
    assert set(out.losses) == {"ce", "kd", "cc", "bc"}
    assert teacher.calls == [32] and student.calls == [16, 16]
    # the losses are MLKD's on the clean batch and the strong view the generator draws
    strong = strong_view(batch, torch.Generator().manual_seed(3))
    with torch.no_grad():
        t = teacher.model(torch.cat([batch.images, strong]))
    s_weak, s_strong = student.model(batch.images), student.model(strong)
    want = make_mlkd()(DistillBatch(s_weak, t[:16], batch.labels, batch.indices, 1, {}, s_strong, t[16:]))
    for name, value in want.items():
        assert out.losses[name].item() == pytest.approx(value.item(), rel=1e-5), name
