"""HE-DA inside the real distillation step (ekdcli.method.objective.DistillObjective) and a real run.

The helpers' tests (test_aug_plugin, test_aug_selection) check ``apply_mix``; these check what the
engine itself feeds the teacher, the student, the distiller and the augmentation's loss, and what
it logs per epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from ekd_plugins.augmentations.energy_mix import he_cutmix, he_mixup
from torch import nn

from ekdcli.engine import Batch, EngineOptions, Runtime
from ekdcli.method.objective import DistillObjective
from ekdcli.sdk.contracts import DistillBatch, Distiller, EnergyContext

B, C, H, W, K, N = 10, 3, 6, 5, 4, 40


class Recorder(nn.Module):
    """A linear classifier that keeps a copy of every input it is shown."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(C * H * W, K)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.fc(x.flatten(1))


class RecordingDistiller(Distiller):
    """Cross-entropy on the rows it is given, keeping each DistillBatch."""

    name = "recording"

    def __init__(self) -> None:
        self.batches: list[DistillBatch] = []

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        self.batches.append(batch)
        return {"ce": F.cross_entropy(batch.student_logits.float(), batch.labels)}


def kd64(s: torch.Tensor, t: torch.Tensor, temperature: float) -> float:
    """T^2 * batch-mean KL(softmax(t/T) || softmax(s/T)), in float64, written out here."""
    log_ps = torch.log_softmax(s.double() / temperature, dim=1)
    log_pt = torch.log_softmax(t.double() / temperature, dim=1)
    return float(temperature**2 * (log_pt.exp() * (log_pt - log_ps)).sum(dim=1).mean())


def make_step(aug: Any) -> tuple[DistillObjective, Recorder, Recorder, RecordingDistiller, Batch]:
    energies = torch.randn(N, generator=torch.Generator().manual_seed(3))
    teacher, student, distiller = Recorder(1), Recorder(2), RecordingDistiller()
    objective = DistillObjective(teacher, distiller, aug, EnergyContext(energies, 4.0, "fp"))
    objective.setup(Runtime(EngineOptions(device="cpu", precision="fp32", channels_last=False, quiet=True)))
    g = torch.Generator().manual_seed(4)
    batch = Batch(
        images=torch.randn(B, C, H, W, generator=g),
        labels=torch.randint(0, K, (B,), generator=g),
        indices=torch.randperm(N, generator=g)[:B],
    )
    return objective, teacher, student, distiller, batch


@pytest.mark.parametrize("factory", [he_cutmix, he_mixup])
@pytest.mark.parametrize("mode", ["extra", "replace"])
def test_the_step_feeds_the_mixed_images_to_teacher_and_student(factory: Any, mode: str) -> None:
    aug = factory(rate=0.5, mode=mode, kd_weight=0.7)
    objective, teacher, student, distiller, batch = make_step(aug)
    out = objective(student, batch, 1, torch.Generator().manual_seed(9))

    # the mix the augmentation makes from the same generator state
    mask = aug.select(batch.indices, None)
    mix = aug.mix(batch.images, batch.labels, mask, torch.Generator().manual_seed(9))
    m = int(mask.sum())
    assert 0 < m < B and out.stats["augmented"] == m
    assert torch.equal(mask, aug.selection.mask[batch.indices])  # only the selected samples were mixed

    (seen_t,), (seen_s,) = teacher.inputs, student.inputs
    assert torch.equal(seen_t, seen_s), "teacher and student see the same (mixed) batch, once each"
    if mode == "extra":
        assert seen_t.shape[0] == B + m
        assert torch.equal(seen_t[:B], batch.images) and torch.equal(seen_t[B:], mix.images)
        clean = torch.arange(B)
        mixed = torch.arange(B, B + m)
    else:
        assert seen_t.shape[0] == B
        assert torch.equal(seen_t[mix.rows], mix.images) and torch.equal(seen_t[~mask], batch.images[~mask])
        clean = torch.nonzero(~mask).squeeze(1)
        mixed = mix.rows

    # the distiller gets the clean rows (all of them in extra mode, the unmixed ones in replace mode)
    (given,) = distiller.batches
    assert torch.equal(given.indices, batch.indices[clean]) and torch.equal(given.labels, batch.labels[clean])
    with torch.no_grad():
        s_logits = student.fc(seen_s.flatten(1))
        t_logits = teacher.fc(seen_t.flatten(1))
    assert torch.allclose(given.student_logits, s_logits[clean])
    # the extra KD term on the mixed rows: kd_weight * KD at T 4 against the teacher on the mixed images
    assert set(out.losses) == {"ce", "mix_kd"}
    expected = 0.7 * kd64(s_logits[mixed], t_logits[mixed], 4.0)
    assert float(out.losses["mix_kd"].detach()) == pytest.approx(expected, rel=1e-5)


def test_online_selection_uses_the_teacher_energies_of_the_clean_batch() -> None:
    aug = he_cutmix(rate=0.3, source="online")
    objective, teacher, student, distiller, batch = make_step(aug)
    out = objective(student, batch, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean_logits = teacher.fc(batch.images.flatten(1)).double()
    online = -4.0 * torch.logsumexp(clean_logits / 4.0, dim=1)
    expected = online > aug.selection.thresholds.high
    assert out.stats["augmented"] == int(expected.sum())
    # the teacher saw the clean batch, then only the mixed rows; the student the clean + mixed batch
    assert [x.shape[0] for x in teacher.inputs] == [B, int(expected.sum())]
    assert torch.equal(teacher.inputs[0], batch.images)
    assert torch.equal(student.inputs[0][B:], teacher.inputs[1])


def test_replace_at_rate_one_mixes_every_row_and_still_trains() -> None:
    aug = he_cutmix(rate=1.0, mode="replace")
    objective, teacher, student, distiller, batch = make_step(aug)
    out = objective(student, batch, 1, torch.Generator().manual_seed(2))
    assert out.stats["augmented"] == B and student.inputs[0].shape[0] == B
    assert distiller.batches == []  # no clean row is left for the distiller
    sum(out.losses.values()).backward()
    assert student.fc.weight.grad is not None and float(student.fc.weight.grad.abs().sum()) > 0


FAKE = """
data = "fake"
teacher = "tiny_cnn"
student = "tiny_cnn"
recipe = "quick"
batch_size = 16
precision = "fp32"

[data_options]
n_train = 64
n_test = 32
num_classes = 4
"""


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
@pytest.mark.parametrize("method", ["kd", "energy_dkd"])
def test_distill_he_cutmix_logs_the_augmented_count_each_epoch(tmp_path: Path, ekd: Any, method: str) -> None:
    """``ekd distill --method kd|energy_dkd --augment he-cutmix --rate 0.5``: every epoch sees all 64
    samples (4 batches of 16), so it mixes exactly the 32 samples of the high-energy half."""
    (tmp_path / "ekd.toml").write_text(FAKE)
    code, _, err = ekd("train", "--model", "tiny_cnn", "--epochs", "1", "--quiet")
    assert code == 0, err
    code, _, err = ekd(
        "distill", "--method", method, "--augment", "he-cutmix", "--rate", "0.5", "--epochs", "2"
    )
    assert code == 0, err
    (run,) = (tmp_path / "store" / "runs").glob("distill-*")
    augmentation = json.loads((run / "summary.json").read_text())["objective"]["augmentation"]
    assert (augmentation["augment"], augmentation["rate"], augmentation["mode"]) == (
        "he-cutmix",
        0.5,
        "extra",
    )
    assert augmentation["selected_fraction"] == 0.5  # E > E_high = sorted[64 - 32 - 1]: 32 samples
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stats"]["augmented"] for r in records] == [32.0, 32.0]
    assert all(r["losses"]["mix_kd"] > 0 and 0 <= r["train_top1"] <= 100 for r in records)
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ") and "test top-1" in line]
    assert len(epoch_lines) == 2 and all("  mixed 32  " in line for line in epoch_lines)
