"""A tiny feature model and feature distiller that follow the SDK's feature contract, for engine tests.

``featnet`` returns ``(logits, {"feats", "preact_feats", "pooled_feat"})`` with
``return_features=True`` and offers ``get_stage_channels()``; ``logitnet`` returns logits only and
declares no features.  ``probe`` is a :class:`FeatureDistiller` with a trainable 1x1 connector (a
parameter) and a memory bank of the training set plus a step counter (buffers that change every
step, like CRD's), drawing negatives from ``DistillBatch.generator``; it records what it was given.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ekdcli.sdk.contracts import DistillBatch, FeatureDistiller, PairContext


class FeatNet(nn.Module):
    """stem conv-BN-ReLU, two conv-BN-ReLU stages (the second strided), pooling, linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        )
        self.stage1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.stage2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width)
        )
        self.fc = nn.Linear(2 * width, num_classes)
        self.width = width

    def get_stage_channels(self) -> list[int]:
        return [self.width, self.width, 2 * self.width]

    def forward(self, x: torch.Tensor, return_features: bool = False) -> Any:
        p0 = self.stem(x)
        f0 = F.relu(p0)
        p1 = self.stage1(f0)
        f1 = F.relu(p1)
        p2 = self.stage2(f1)
        f2 = F.relu(p2)
        pooled = f2.mean(dim=(2, 3))
        logits = self.fc(pooled)
        if return_features:
            return logits, {"feats": [f0, f1, f2], "preact_feats": [p0, p1, p2], "pooled_feat": pooled}
        return logits


class LogitNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


class ProbeModules(nn.Module):
    def __init__(self, s_channels: int, t_channels: int, s_dim: int, train_size: int) -> None:
        super().__init__()
        self.connector = nn.Conv2d(s_channels, t_channels, 1, bias=False)
        self.register_buffer("memory", torch.zeros(train_size, s_dim))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


class Probe(FeatureDistiller):
    """CE + MSE(connector(student's last feats), teacher's) + a memory-bank term with drawn negatives."""

    name = "probe"
    features = ("feats", "pooled_feat")
    model_hooks = ("stage_channels",)
    seen: list[dict[str, Any]] = []  # noqa: RUF012 - what each call received (tests read it)

    def __init__(self, w_feat: float = 1.0) -> None:
        self.w_feat = float(w_feat)
        self.pair: PairContext | None = None

    def bind(self, pair: PairContext) -> None:
        self.pair = pair
        s = pair.student.get_stage_channels()[-1]
        t = pair.teacher.get_stage_channels()[-1] if pair.teacher is not None else s
        with torch.no_grad():  # probe the pooled width with a forward pass
            _, feats = pair.student(torch.zeros(1, pair.in_channels, *pair.image_size), return_features=True)
        self.modules = ProbeModules(s, t, int(feats["pooled_feat"].shape[1]), pair.train_size)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "w_feat": self.w_feat}

    def __call__(self, batch: DistillBatch) -> dict[str, torch.Tensor]:
        assert self.modules is not None and batch.student_features is not None
        assert batch.teacher_features is not None and batch.generator is not None
        Probe.seen.append(
            {
                "rows": batch.student_logits.shape[0],
                "student_rows": [f.shape[0] for f in batch.student_features.feats],
                "pooled_rows": batch.student_features.pooled_feat.shape[0],
                "teacher_rows": [f.shape[0] for f in batch.teacher_features.feats],
                "teacher_feats": [f.detach().clone() for f in batch.teacher_features.feats],
                "teacher_logits": batch.teacher_logits.detach().clone(),
                "indices": batch.indices.clone(),
                "training": self.modules.training,
            }
        )
        s_feat, t_feat = batch.student_features.feats[-1], batch.teacher_features.feats[-1]
        hint = F.mse_loss(self.modules.connector(s_feat).float(), t_feat.float())
        pooled = batch.student_features.pooled_feat.float()
        memory = self.modules.memory
        negatives = torch.randint(0, memory.shape[0], (4,), generator=batch.generator, device=memory.device)
        bank = (pooled @ memory[negatives].t()).mean()
        with torch.no_grad():
            memory[batch.indices] = 0.5 * memory[batch.indices] + 0.5 * pooled.detach()
            self.modules.steps += 1
        ce = F.cross_entropy(batch.student_logits.float(), batch.labels)
        return {"loss_ce": ce, "loss_feat": self.w_feat * hint + 0.01 * bank}


def make_probe(w_feat: float = 1.0) -> Probe:
    return Probe(w_feat)


def register() -> None:
    """Add ``featnet``, ``logitnet``, ``probe`` and ``probe1`` (single process) to this process's registries."""
    from ekdcli.sdk.plugins import registry
    from ekdcli.sdk.registry import Component

    feature_info = {"features": ["feats", "preact_feats", "pooled_feat"], "model_hooks": ["stage_channels"]}
    registry("models").add(Component("models", "featnet", FeatNet, "tests", info=feature_info))
    registry("models").add(Component("models", "logitnet", LogitNet, "tests"))
    info = {
        "kind": "feature",
        "needs_teacher": True,
        "features": ["feats", "pooled_feat"],
        "model_hooks": ["stage_channels"],
        "options": {"w_feat": 1.0},
    }
    registry("distillers").add(
        Component("distillers", "probe", make_probe, "tests", description="probe", info=info)
    )
    single = {**info, "single_process": True}
    registry("distillers").add(
        Component("distillers", "probe1", make_probe, "tests", description="one", info=single)
    )


def ddp_worker(rank: int, world_size: int, init_file: str, run_dir: str, out_dir: str) -> None:
    """One rank of a CPU (gloo) distillation with ``probe``: its connector starts from a different
    random init on each rank; save the connector before and after training."""
    from pathlib import Path

    from ekdcli.engine import ddp
    from ekdcli.engine.loop import fit
    from ekdcli.engine.options import EngineOptions
    from ekdcli.engine.recipe import Recipe
    from ekdcli.engine.runtime import Runtime
    from ekdcli.engine.testing import synthetic_dataset
    from ekdcli.method.features import bind_distiller, pair_context
    from ekdcli.method.objective import DistillObjective

    ddp.init(rank, world_size, f"file://{init_file}", backend="gloo")
    try:
        options = EngineOptions(device="cpu", precision="fp32", quiet=True, seed=0)
        runtime = Runtime(options)
        dataset = synthetic_dataset(train=64, test=16)
        torch.manual_seed(5)
        teacher, student = FeatNet(4, width=8).eval(), FeatNet(4, width=6)
        torch.manual_seed(100 + rank)  # a different connector on each rank: rank 0's must win
        probe = Probe()
        bind_distiller(probe, pair_context(student, teacher, ("s", "t"), dataset, None, world_size))
        assert probe.modules is not None
        initial = probe.modules.connector.weight.detach().clone()
        recipe = Recipe(epochs=1, batch_size=16, lr=0.1)
        fit(
            student,
            dataset,
            DistillObjective(teacher, probe),
            recipe,
            options,
            Path(run_dir),
            runtime=runtime,
        )
        torch.save(
            {"initial": initial, "trained": probe.modules.connector.weight.detach().cpu().clone()},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        ddp.cleanup()
