"""The options of the synthetic ``fake`` dataset, stated once as an option record (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from ekdcli.sdk.options import option


@dataclass(frozen=True)
class FakeOptions:
    n_train: int = option(512, "training images", minimum=1)
    n_test: int = option(128, "test images", minimum=1)
    num_classes: int = option(10, "classes", minimum=2)
    channels: int = option(3, "channels per image", minimum=1)
    height: int = option(32, "image height", minimum=4)
    width: int = option(32, "image width", minimum=4)
    seed: int = option(0, "the seed of the templates and the noise", kind="seed")
    noise: float = option(40.0, "the pixel noise's standard deviation (below 0 counts as 0)")
