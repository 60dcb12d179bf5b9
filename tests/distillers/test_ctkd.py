"""CTKD: the learned temperature, its reversed gradient, the cosine curriculum, gradcheck, and a
kill -9 + resume that continues bitwise (student, temperature module and optimizer state).

The float64 references are written from the released code's definitions (train_student.py,
models/temp_global.py, distiller_zoo/KD.py) with numpy loops; nothing of ekd is used in them.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ekd_plugins.distillers.ctkd import curriculum_lambda, make_ctkd
from torch import nn

from ekdcli.engine.loop import FitResult, fit
from ekdcli.engine.options import EngineOptions
from ekdcli.engine.recipe import Recipe
from ekdcli.engine.testing import TinyNet, synthetic_dataset
from ekdcli.method.objective import DistillObjective
from ekdcli.sdk.contracts import DistillBatch, TemperatureRule

B, K = 6, 5


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def ref_loss(s: np.ndarray, t: np.ndarray, y: np.ndarray, taus: list[float]) -> float:
    """0.1 * CE + 0.9 * mean_i tau_i^2 KL(softmax(t_i / tau_i) || softmax(s_i / tau_i))."""
    ce = kd = 0.0
    for i in range(len(s)):
        ce -= math.log(softmax(s[i])[y[i]])
        p, q = softmax(t[i] / taus[i]), softmax(s[i] / taus[i])
        kd += taus[i] ** 2 * sum(p[j] * math.log(p[j] / q[j]) for j in range(len(p)))
    return 0.1 * ce / len(s) + 0.9 * kd / len(s)


def ref_tau(g: float) -> float:
    return 1.0 + 20.0 / (1.0 + math.exp(-g))  # released: t_start + t_end * sigmoid(global_T)


@pytest.fixture
def data() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "s": torch.randn(B, K, generator=gen, dtype=torch.float64) * 3,
        "t": torch.randn(B, K, generator=gen, dtype=torch.float64) * 3,
        "y": torch.randint(0, K, (B,), generator=gen),
    }


def batch(data: dict[str, torch.Tensor], epoch: int = 1, s: torch.Tensor | None = None) -> DistillBatch:
    return DistillBatch(data["s"] if s is None else s, data["t"], data["y"], torch.arange(B), epoch)


def test_curriculum_follows_the_released_cosine_decay() -> None:
    # released: value(i) = (cos(i pi / 10) + 1) / 2 * (0 - (-1)) + (-1), and the GRL multiplies by value
    for epoch in range(0, 25):
        i = min(epoch, 10)
        released = (math.cos(i * math.pi / 10) + 1.0) * 0.5 * (0.0 - (-1.0)) + (-1.0)
        assert curriculum_lambda(epoch, 0.0, 1.0, 10) == pytest.approx(-released, abs=1e-15)
    assert curriculum_lambda(1, 0.0, 1.0, 10) == pytest.approx(0.0244717, abs=1e-7)
    assert curriculum_lambda(10, 0.0, 1.0, 10) == 1.0 and curriculum_lambda(240, 0.0, 1.0, 10) == 1.0


def test_loss_at_the_learned_global_temperature(data) -> None:
    d = make_ctkd()
    d.module.double()
    out = d(batch(data))
    tau = ref_tau(1.0)  # Global_T starts at 1
    want = ref_loss(data["s"].numpy(), data["t"].numpy(), data["y"].numpy(), [tau] * B)
    assert (out["ce"] + out["kd"]).item() == pytest.approx(want, rel=1e-12)
    assert d.describe()["learned_t"] == pytest.approx(tau)


@pytest.mark.parametrize("epoch", [1, 4, 12])
def test_the_temperature_gets_the_reversed_gradient_scaled_by_lambda(data, epoch: int) -> None:
    d = make_ctkd()
    d.module.double()
    losses = d(batch(data, epoch))
    (losses["ce"] + losses["kd"]).backward()
    # dL/dg of the reference by central differences, then the GRL: -lambda * dL/dg
    s, t, y, h = data["s"].numpy(), data["t"].numpy(), data["y"].numpy(), 1e-6
    slope = (ref_loss(s, t, y, [ref_tau(1 + h)] * B) - ref_loss(s, t, y, [ref_tau(1 - h)] * B)) / (2 * h)
    lam = curriculum_lambda(epoch, 0.0, 1.0, 10)
    assert d.module.value.grad.item() == pytest.approx(-lam * slope, rel=1e-6, abs=1e-12)
    assert slope != 0.0


class Given(nn.Module):
    """Stands in for the temperature module: its output is a gradcheck input."""

    def __init__(self, g: torch.Tensor) -> None:
        super().__init__()
        self.g = g

    def forward(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        return self.g


def test_gradcheck_ctkd_loss_in_student_and_temperature(data) -> None:
    # lambda = -1 throughout: the reversal multiplies by +1, so the gradient is the loss's own
    d = make_ctkd(lambda_min=-1.0, lambda_max=-1.0)

    def loss(s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        d._module = Given(g.reshape(()))
        return torch.stack(list(d(batch(data, 3, s)).values()))

    s = data["s"].clone().requires_grad_(True)
    g = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (s, g))


class Halves(TemperatureRule):
    """Rows 0-2 at the reference temperature, rows 3-5 at half of it."""

    name = "halves"
    reference = 4.0

    def __call__(self, teacher_logits, indices, stats):  # noqa: ANN001, ANN204
        return torch.where(indices < 3, 4.0, 2.0).float()


def test_a_temperature_rule_rescales_the_learned_temperature(data) -> None:
    d = make_ctkd(temperature_rule=Halves())
    d.module.double()
    out = d(batch(data))
    tau = ref_tau(1.0)
    want = ref_loss(data["s"].numpy(), data["t"].numpy(), data["y"].numpy(), [tau] * 3 + [tau / 2] * 3)
    assert (out["ce"] + out["kd"]).item() == pytest.approx(want, rel=1e-7)
    assert d.describe()["temperature_rule"] == "halves"


def test_instance_variant_learns_one_temperature_per_sample_without_touching_the_student_path(data) -> None:
    from ekdcli.sdk.losses import kd_loss

    torch.manual_seed(0)
    d = make_ctkd(variant="instance", num_classes=K, hidden=8)
    d.module.double()
    s = data["s"].clone().requires_grad_(True)
    losses = d(batch(data, 10, s))
    (losses["ce"] + losses["kd"]).backward()
    taus = d.learned_temperature(batch(data, 10), data["s"], data["t"]).detach()
    assert taus.shape == (B,) and len(set(taus.tolist())) == B and bool(((taus > 1) & (taus < 21)).all())
    # the student's gradient is that of the loss at these temperatures: the module sees detached logits
    s2 = data["s"].clone().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(s2, data["y"])
    (0.1 * ce + 0.9 * kd_loss(s2, data["t"], taus)).backward()
    assert torch.allclose(s.grad, s2.grad, rtol=1e-12, atol=1e-15)
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in d.parameters())


def test_instance_variant_without_the_class_count_is_a_clear_error() -> None:
    from ekdcli.sdk.errors import JobError

    with pytest.raises(JobError, match="needs num_classes"):
        make_ctkd(variant="instance").parameters()


def test_state_dict_round_trip() -> None:
    a, b = make_ctkd(), make_ctkd()
    with torch.no_grad():
        a.module.value.fill_(-0.75)
    b.load_state_dict(a.state_dict())
    assert b.module.value.item() == -0.75


# ------------------------------------------------------------------ through the engine
RECIPE = Recipe(epochs=3, batch_size=32, lr=0.1, milestones=(2,))  # 128 samples: 4 steps per epoch


def run(run_dir: Path | None, **kwargs) -> tuple[FitResult, float]:  # noqa: ANN003
    """CTKD (lambda reaches 1 in 2 epochs) from a fixed TinyNet teacher into a TinyNet student."""
    torch.manual_seed(123)
    teacher = TinyNet()
    torch.manual_seed(kwargs.pop("init_seed", 0))
    student = TinyNet(dropout=0.3)
    distiller = make_ctkd(lambda_epochs=2)
    objective = DistillObjective(teacher, distiller)
    data = synthetic_dataset(train=128, test=40)
    options = EngineOptions(device="cpu", precision="fp32", quiet=True, seed=7)
    result = fit(student, data, objective, RECIPE, options, run_dir, **kwargs)
    return result, float(distiller.module.value.detach())


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
import test_ctkd as t
from ekdcli.method.objective import DistillObjective

calls = 0
original = DistillObjective.__call__

def killing(self, model, batch, epoch, generator):
    global calls
    calls += 1
    if calls == 7:  # epoch 2, step 3: after the checkpoint of epoch 1
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, model, batch, epoch, generator)

DistillObjective.__call__ = killing
t.run(Path(sys.argv[2]))
"""


@pytest.mark.slow
def test_ctkd_resumes_bitwise_after_a_real_kill(tmp_path: Path) -> None:
    straight, straight_g = run(tmp_path / "a")
    assert straight_g != 1.0  # the temperature really trained
    run_dir = tmp_path / "b"
    here = str(Path(__file__).parent)
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, here, str(run_dir)], timeout=300, check=False)
    assert killed.returncode == -signal.SIGKILL
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and "value" in checkpoint["objective"]["distiller"]["module"]
    resumed, resumed_g = run(run_dir, resume=True, init_seed=99)  # another init: the checkpoint must win
    assert resumed.epochs_run == 2
    assert resumed_g == straight_g
    for key, value in straight.last_state.items():
        assert torch.equal(resumed.last_state[key], value), key
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    tau_sums = [r["stats"]["ctkd_tau_sum"] for r in straight.history]
    assert tau_sums == [r["stats"]["ctkd_tau_sum"] for r in resumed.history]


def ddp_ctkd_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """One rank of a two-process CTKD run; saves its temperature and its student."""
    from ekdcli.engine import ddp

    ddp.init(rank, world_size, f"file://{init_file}", backend="gloo")
    try:
        torch.manual_seed(123)
        teacher = TinyNet()
        torch.manual_seed(0)
        student = TinyNet()
        distiller = make_ctkd(lambda_epochs=1)
        options = EngineOptions(device="cpu", precision="fp32", quiet=True, seed=7)
        data = synthetic_dataset(train=128, test=16)
        fit(
            student,
            data,
            DistillObjective(teacher, distiller),
            Recipe(epochs=2, batch_size=32, lr=0.1),
            options,
            None,
        )
        state = {"g": distiller.module.value.detach().clone(), "student": student.state_dict()}
        torch.save(state, Path(out_dir) / f"rank{rank}.pt")
    finally:
        ddp.cleanup()


@pytest.mark.slow
def test_two_processes_keep_one_temperature(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(ddp_ctkd_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(rank0["g"], rank1["g"]) and rank0["g"].item() != 1.0  # trained, and in step
    for key, value in rank0["student"].items():
        assert torch.equal(value, rank1["student"][key]), key
