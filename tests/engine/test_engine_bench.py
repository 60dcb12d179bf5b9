"""StepBench steps like fit; objectives whose setup takes num_epochs get the recipe's."""

from __future__ import annotations

import torch

from ekdcli.engine import CrossEntropyObjective, EngineOptions, Recipe, StepBench, fit
from ekdcli.engine.testing import TinyNet, synthetic_dataset


def test_step_bench_trains_and_times_each_step() -> None:
    torch.manual_seed(0)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = synthetic_dataset(train=40)  # 2 steps per epoch: the bench must roll into the next epoch
    bench = StepBench(
        model, data, CrossEntropyObjective(), Recipe(epochs=1, batch_size=16), EngineOptions(device="cpu")
    )
    timing = bench.time_steps(5)
    assert len(timing.seconds) == 5 and all(s > 0 for s in timing.seconds)
    assert timing.images == 80 and bench.epoch == 3
    assert timing.losses["loss_ce"] > 0 and timing.images_per_s > 0
    assert not torch.equal(before["fc.weight"], model.state_dict()["fc.weight"])


class EpochAware(CrossEntropyObjective):
    def setup(self, runtime, num_epochs: int = 1) -> None:  # noqa: ANN001
        self.num_epochs = num_epochs


def test_setup_receives_the_number_of_epochs() -> None:
    objective = EpochAware()
    data = synthetic_dataset(train=32, test=8)
    options = EngineOptions(device="cpu", precision="fp32", quiet=True)
    fit(TinyNet(), data, objective, Recipe(epochs=2, batch_size=16), options, None)
    assert objective.num_epochs == 2
