"""Energy KD / Energy DKD: presets, energy sources, ablations, gradation, ties, stats, gradients."""

from __future__ import annotations

import distill_reference as ref
import numpy as np
import pytest
import torch
from ekd_plugins.distillers.energy_kd import make_energy_dkd, make_energy_kd

from ekdcli.sdk.contracts import DistillBatch, EnergyContext
from ekdcli.sdk.energy import energy as ekd_energy

N = 64
K = 10


def teacher_like(rows: int, seed: int) -> torch.Tensor:
    """Logits with a per-row scale so energies spread over low, middle and high values."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.3, 6.0, rows)[torch.randperm(rows, generator=g)]
    return torch.randn(rows, K, generator=g) * scale[:, None]


def context(energies: torch.Tensor, t_e: float = 4.0) -> EnergyContext:
    return EnergyContext(energies=energies.float(), energy_temperature=t_e, fingerprint="test")


@pytest.fixture
def dataset() -> dict[str, torch.Tensor]:
    t_all = teacher_like(N, 1)
    g = torch.Generator().manual_seed(2)
    return {
        "teacher": t_all,
        "energies": torch.from_numpy(ref.energy(t_all)).float(),
        "student": torch.randn(N, K, generator=g) * 2,
        "labels": torch.randint(0, K, (N,), generator=g),
    }


def run(d, data: dict[str, torch.Tensor], idx: torch.Tensor, teacher: torch.Tensor | None = None, epoch=30):
    t = data["teacher"][idx] if teacher is None else teacher
    b = DistillBatch(data["student"][idx], t, data["labels"][idx], idx, epoch)
    return d(b), b


# (preset, apply) -> (T for low energy, mid, high energy)
EXPECTED_TEMPS = {
    ("paper", "both"): (6.0, 4.0, 2.0),
    ("paper", "low"): (6.0, 4.0, 4.0),
    ("paper", "high"): (4.0, 4.0, 2.0),
    ("official", "both"): (2.0, 4.0, 6.0),
    ("official", "low"): (2.0, 4.0, 4.0),
    ("official", "high"): (4.0, 4.0, 6.0),
}


@pytest.mark.parametrize(("preset", "apply"), list(EXPECTED_TEMPS))
@pytest.mark.parametrize("source", ["static", "online"])
def test_energy_kd_matches_eq9(dataset, preset: str, apply: str, source: str) -> None:
    d = make_energy_kd(preset=preset, apply=apply, source=source)
    d.setup(context(dataset["energies"]), num_epochs=10)
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(3))[:24]
    # online: a fresh (augmented) view, whose energy differs from the score file's
    fresh = teacher_like(24, 4) if source == "online" else None
    out, b = run(d, dataset, idx, fresh)
    e_low, e_high = ref.thresholds(dataset["energies"], 0.2, 0.2)
    batch_energy = dataset["energies"][idx] if source == "static" else ref.energy(fresh)
    temps = ref.partition_temps(
        batch_energy, e_low, e_high, *EXPECTED_TEMPS[preset, apply], preset == "paper"
    )
    teacher = dataset["teacher"][idx] if fresh is None else fresh
    assert out["kd"].item() == pytest.approx(0.9 * ref.kd(dataset["student"][idx], teacher, temps), rel=1e-4)
    assert out["ce"].item() == pytest.approx(0.1 * ref.ce(dataset["student"][idx], dataset["labels"][idx]))
    for value in set(temps.tolist()):
        assert b.stats[f"n_T{value:g}"] == float((temps == value).sum())
    assert sum(b.stats.values()) == 24
    assert len(set(temps.tolist())) >= 2  # the batch really exercises the rule


def test_default_preset_is_paper_and_described(dataset) -> None:
    d = make_energy_kd()
    before = d.describe()
    assert before["thresholds"] is None
    d.setup(context(dataset["energies"]), 10)
    desc = d.describe()
    e_low, e_high = ref.thresholds(dataset["energies"], 0.2, 0.2)
    assert desc["method"] == "energy_kd" and desc["preset"] == "paper" and desc["source"] == "static"
    assert desc["low_rule"] == "paper" and desc["apply"] == "both"
    assert desc["temperatures"] == {"low": 6.0, "mid": 4.0, "high": 2.0}
    assert desc["thresholds"]["low"] == pytest.approx(e_low) and desc["thresholds"]["high"] == pytest.approx(
        e_high
    )
    assert desc["w_ce"] == 0.1 and desc["w_kd"] == 0.9 and desc["energy_temperature"] == 4.0
    # N = 64, r = 0.2: 12 high; paper's "<=" adds the threshold sample itself to the low side
    assert desc["train_counts"] == {"low": 13, "mid": 39, "high": 12}


def test_official_preset_counts_and_source(dataset) -> None:
    d = make_energy_kd(preset="official")
    d.setup(context(dataset["energies"]), 10)
    desc = d.describe()
    assert desc["source"] == "online" and desc["low_rule"] == "released"
    assert desc["temperatures"] == {"low": 2.0, "mid": 4.0, "high": 6.0}
    assert desc["train_counts"] == {"low": 12, "mid": 40, "high": 12}


def test_static_and_online_disagree_when_the_view_changes(dataset) -> None:
    order = torch.argsort(dataset["energies"])
    lowest, highest = order[:1], order[-1:]
    # the view of the lowest-energy sample now looks like the highest-energy one
    view = dataset["teacher"][highest]
    temps = {}
    for source in ("static", "online"):
        d = make_energy_kd(preset="paper", source=source)
        d.setup(context(dataset["energies"]), 10)
        temps[source] = d.rule.temperatures(lowest, view).tolist()
    assert temps == {"static": [6.0], "online": [2.0]}


def test_explicit_temperatures_and_offsets_override_preset(dataset) -> None:
    d = make_energy_kd(preset="paper", t=5.0, t_plus=3.0, t_minus=-1.5)
    assert d.describe()["temperatures"] == {"low": 8.0, "mid": 5.0, "high": 3.5}
    d = make_energy_kd(preset="official", t_low_energy=1.5, t_mid=3.0, t_high_energy=7.0)
    assert d.describe()["temperatures"] == {"low": 1.5, "mid": 3.0, "high": 7.0}


def test_rates_single_and_separate(dataset) -> None:
    d = make_energy_kd(preset="official", source="static", rate=0.25)
    d.setup(context(dataset["energies"]), 10)
    assert d.describe()["train_counts"] == {"low": 16, "mid": 32, "high": 16}
    d = make_energy_kd(preset="official", source="static", rate=0.5, low_rate=0.1, high_rate=0.3)
    d.setup(context(dataset["energies"]), 10)
    desc = d.describe()
    assert (desc["low_rate"], desc["high_rate"]) == (0.1, 0.3)
    assert desc["train_counts"] == {"low": 6, "mid": 39, "high": 19}


def test_official_preset_uses_released_rate_of_known_pair() -> None:
    assert make_energy_kd(preset="official", pair=("resnet56", "resnet20")).describe()["low_rate"] == 0.3
    assert make_energy_kd(preset="paper", pair=("resnet56", "resnet20")).describe()["low_rate"] == 0.2
    assert (
        make_energy_kd(preset="official", pair="resnet56,resnet20", rate=0.4).describe()["high_rate"] == 0.4
    )


def test_ties_paper_vs_released_rule() -> None:
    energies = torch.tensor([5.0, 2.0, 0.0, 2.0, 7.0, 1.0, 2.0, 6.0, 3.0, 4.0])
    # sorted: 0 1 2 2 2 3 4 5 6 7; r = 0.2 -> E_low = sorted[2] = 2, E_high = sorted[7] = 5
    idx = torch.arange(10)
    got = {}
    for rule in ("paper", "released"):
        d = make_energy_kd(preset="paper", low_rule=rule)
        d.setup(context(energies), 10)
        got[rule] = d.rule.temperatures(idx, None).tolist()
        e_low, e_high = ref.thresholds(energies, 0.2, 0.2)
        assert (e_low, e_high) == (2.0, 5.0)
        want = ref.partition_temps(energies, e_low, e_high, 6.0, 4.0, 2.0, rule == "paper")
        assert got[rule] == want.tolist()
    assert got["paper"].count(6.0) == 5  # 0, 1 and the three tied 2s
    assert got["released"].count(6.0) == 2  # only 0 and 1
    assert got["paper"].count(2.0) == got["released"].count(2.0) == 2  # 6 and 7


@pytest.mark.parametrize(("preset", "first", "last"), [("paper", 6.0, 2.0), ("official", 2.0, 6.0)])
@pytest.mark.parametrize("source", ["static", "online"])
def test_gradation_ten_segments(preset: str, first: float, last: float, source: str) -> None:
    n, classes = 100, 10
    t_all = teacher_like(n, 5)
    # as the scoring pass stores them: float32 energies from the same float32 logits, so that the
    # online recomputation of a sample lying exactly on a segment edge lands in the same segment
    energies = ekd_energy(t_all, 4.0)
    assert np.allclose(energies.numpy(), ref.energy(t_all), rtol=1e-5)
    d = make_energy_kd(preset=preset, segments=10, source=source)
    d.setup(context(energies), 10)
    rank = np.argsort(np.argsort(energies.numpy(), kind="stable"), kind="stable")
    step = (6.0 - 2.0) / 9
    ramp = [2.0 + step * k for k in range(10)]
    per_segment = ramp[::-1] if preset == "paper" else ramp
    want = np.array([per_segment[r // 10] for r in rank])
    g = torch.Generator().manual_seed(6)
    b = DistillBatch(
        torch.randn(n, classes, generator=g),
        t_all,
        torch.randint(0, 10, (n,), generator=g),
        torch.arange(n),
        30,
    )
    out = d(b)
    temps = d.rule.temperatures(torch.arange(n), t_all).double().numpy()
    assert np.allclose(temps, want, atol=1e-6)
    assert temps[np.argmin(energies.numpy())] == pytest.approx(first)
    assert temps[np.argmax(energies.numpy())] == pytest.approx(last)
    assert sorted(b.stats.values()) == [10.0] * 10
    assert out["kd"].item() == pytest.approx(0.9 * ref.kd(b.student_logits, t_all, want), rel=1e-4)
    assert d.describe()["train_counts"] == {f"segment{k}": 10 for k in range(10)}


def test_gradation_with_custom_range() -> None:
    d = make_energy_kd(preset="official", segments=3, t_min=1.0, t_max=3.0)
    assert d.describe()["temperatures"] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(("preset", "source"), [("paper", "static"), ("official", "online")])
def test_energy_dkd_matches_formula(dataset, preset: str, source: str) -> None:
    d = make_energy_dkd(preset=preset, beta=6.0, alpha=1.5, warmup=20)
    d.setup(context(dataset["energies"]), 10)
    idx = torch.arange(0, N, 2)
    out, b = run(d, dataset, idx, epoch=5)
    e_low, e_high = ref.thresholds(dataset["energies"], 0.2, 0.2)
    temps = ref.partition_temps(
        dataset["energies"][idx], e_low, e_high, *EXPECTED_TEMPS[preset, "both"], preset == "paper"
    )
    tckd, nckd = ref.dkd(dataset["student"][idx], dataset["teacher"][idx], dataset["labels"][idx], temps)
    assert out["tckd"].item() == pytest.approx(0.25 * 1.5 * tckd, rel=1e-4)
    assert out["nckd"].item() == pytest.approx(0.25 * 6.0 * nckd, rel=1e-4)
    assert out["ce"].item() == pytest.approx(
        ref.ce(dataset["student"][idx], dataset["labels"][idx]), rel=1e-5
    )
    assert sum(b.stats.values()) == len(idx)
    assert d.describe()["beta"] == 6.0 and d.describe()["warmup"] == 20.0


def test_energy_kd_logit_standardization(dataset) -> None:
    d = make_energy_kd(logit_standardize=True)
    d.setup(context(dataset["energies"]), 10)
    idx = torch.arange(20)
    out, _ = run(d, dataset, idx)
    e_low, e_high = ref.thresholds(dataset["energies"], 0.2, 0.2)
    temps = ref.partition_temps(dataset["energies"][idx], e_low, e_high, 6.0, 4.0, 2.0, True)
    want = ref.kd(ref.standardize(dataset["student"][idx]), ref.standardize(dataset["teacher"][idx]), temps)
    assert out["kd"].item() == pytest.approx(0.9 * want, rel=1e-4)


@pytest.mark.parametrize(("preset", "source"), [("paper", "static"), ("official", "online")])
def test_energy_dkd_logit_standardization(dataset, preset: str, source: str) -> None:
    # energies as the scoring pass stores them (float32 from these logits), so that the online
    # recomputation of a sample lying exactly on a threshold lands on the same side
    energies = ekd_energy(dataset["teacher"], 4.0)
    d = make_energy_dkd(preset=preset, source=source, logit_standardize=True, beta=8.0, warmup=20)
    d.setup(context(energies), 10)
    idx = torch.arange(N)
    out, _ = run(d, dataset, idx, epoch=40)
    e_low, e_high = ref.thresholds(energies, 0.2, 0.2)
    # the temperatures follow the raw teacher's energy; only the distillation terms see z-scores
    temps = ref.partition_temps(energies, e_low, e_high, *EXPECTED_TEMPS[preset, "both"], preset == "paper")
    assert len(set(temps.tolist())) == 3
    tckd, nckd = ref.dkd(
        ref.standardize(dataset["student"]), ref.standardize(dataset["teacher"]), dataset["labels"], temps
    )
    assert out["tckd"].item() == pytest.approx(tckd, rel=1e-4)
    assert out["nckd"].item() == pytest.approx(8.0 * nckd, rel=1e-4)
    assert out["ce"].item() == pytest.approx(ref.ce(dataset["student"], dataset["labels"]), rel=1e-5)


def test_energy_dkd_two_classes_extreme_logits_is_finite() -> None:
    g = torch.Generator().manual_seed(9)
    teacher = torch.randn(32, 2, generator=g) * torch.linspace(1.0, 1e4, 32)[:, None]
    student = torch.randn(32, 2, generator=g) * 1e4
    y = torch.randint(0, 2, (32,), generator=g)
    energies = ekd_energy(teacher, 4.0)
    assert torch.isfinite(energies).all()
    d = make_energy_dkd(preset="official", warmup=0)
    d.setup(context(energies), 10)
    s = student.clone().requires_grad_(True)
    out = d(DistillBatch(s, teacher, y, torch.arange(32), 1))
    assert out["nckd"].item() == 0.0  # one non-target class: nothing to distribute
    temps = d.rule.temperatures(torch.arange(32), teacher)
    want = 0.0
    for i in range(32):  # binary KL in log space, as in distill_reference.dkd_logspace
        t_i = float(temps[i])
        lt, ls = (
            ref.log_softmax_row(ref.np64(teacher[i]) / t_i),
            ref.log_softmax_row(ref.np64(student[i]) / t_i),
        )
        want += t_i**2 * ref.kl_from_logs(lt, ls)
    assert out["tckd"].item() == pytest.approx(want / 32, rel=1e-4)
    sum(out.values()).backward()
    assert torch.isfinite(s.grad).all()


def test_stats_accumulate_into_existing_counts(dataset) -> None:
    d = make_energy_kd(preset="official", source="static", t_mid=4.0)
    d.setup(context(dataset["energies"]), 10)
    idx = torch.arange(N)
    b = DistillBatch(dataset["student"], dataset["teacher"], dataset["labels"], idx, 1, stats={"n_T4": 100.0})
    d(b)
    assert b.stats == {"n_T2": 12.0, "n_T4": 140.0, "n_T6": 12.0}


def test_gradcheck_energy_dkd(dataset) -> None:
    d = make_energy_dkd(preset="paper", beta=8.0)
    d.setup(context(dataset["energies"]), 10)
    idx = torch.tensor([int(i) for i in torch.argsort(dataset["energies"])[[0, 1, 30, 62, 63]]])
    te, y = dataset["teacher"][idx].double(), dataset["labels"][idx]
    s = dataset["student"][idx].double().requires_grad_(True)

    def loss(z: torch.Tensor) -> torch.Tensor:
        out = d(DistillBatch(z, te, y, idx, 30))
        return out["ce"] + out["tckd"] + out["nckd"]

    assert torch.autograd.gradcheck(loss, (s,), fast_mode=True)


def test_gradcheck_energy_kd(dataset) -> None:
    d = make_energy_kd(preset="official")
    d.setup(context(dataset["energies"]), 10)
    idx = torch.arange(6)
    te, y = dataset["teacher"][idx].double(), dataset["labels"][idx]
    s = dataset["student"][idx].double().requires_grad_(True)

    def loss(z: torch.Tensor) -> torch.Tensor:
        out = d(DistillBatch(z, te, y, idx, 30))
        return out["ce"] + out["kd"]

    assert torch.autograd.gradcheck(loss, (s,))
    assert len(set(d.rule.temperatures(idx, te).tolist())) >= 2  # the rows really differ in T


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_energy_dkd_on_cuda_with_bf16(dataset) -> None:
    dev = torch.device("cuda")
    d = make_energy_dkd(preset="official")
    d.setup(context(dataset["energies"].to(dev)), 10)
    idx = torch.arange(N, device=dev)
    b = DistillBatch(
        dataset["student"].to(dev, torch.bfloat16),
        dataset["teacher"].to(dev, torch.bfloat16),
        dataset["labels"].to(dev),
        idx,
        30,
    )
    out = d(b)
    assert all(v.device.type == "cuda" and v.dtype == torch.float32 for v in out.values())
    cpu = make_energy_dkd(preset="official")
    cpu.setup(context(dataset["energies"]), 10)
    ref_out = cpu(
        DistillBatch(b.student_logits.cpu(), b.teacher_logits.cpu(), dataset["labels"], idx.cpu(), 30)
    )
    for key in out:
        assert out[key].item() == pytest.approx(ref_out[key].item(), rel=1e-3)


def test_overlap_of_low_and_high_goes_to_high_as_eq9_orders_it() -> None:
    energies = torch.arange(10.0)
    d = make_energy_kd(preset="paper", low_rate=0.5, high_rate=0.5)
    d.setup(context(energies), 10)
    # E_low = sorted[5] = 5, E_high = sorted[4] = 4: energy 5 is both "<= E_low" and "> E_high"
    assert d.rule.temperatures(torch.arange(10), None).tolist() == [6.0] * 5 + [2.0] * 5
