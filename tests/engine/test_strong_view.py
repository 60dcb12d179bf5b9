"""The strong view: batched RandAugment operations against PIL, per-row independence, Cutout, and
the view drawn from a training batch (seeded by the engine's generator)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ekdcli.engine.options import EngineOptions
from ekdcli.engine.pipeline import make_batches
from ekdcli.engine.runtime import Runtime
from ekdcli.engine.strong import OPERATIONS, apply_operations, cutout, rand_augment, strong_view
from ekdcli.engine.testing import synthetic_dataset
from ekdcli.util.errors import UsageError

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageEnhance, ImageOps  # noqa: E402

NAMES = [op[0] for op in OPERATIONS]


def images(n: int = 6, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(20, 200, (n, 3, 1, 1), generator=g)
    noise = torch.randint(-40, 40, (n, 3, size, size), generator=g)
    return (base + noise).clamp(0, 255).to(torch.uint8)


def to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(x.permute(1, 2, 0).numpy())


def from_pil(img: Image.Image) -> np.ndarray:
    return np.asarray(img).transpose(2, 0, 1).astype(np.int64)


def ekd_op(x: torch.Tensor, name: str, value: float) -> np.ndarray:
    rows = x.shape[0]
    ops = torch.full((rows,), NAMES.index(name))
    out = apply_operations(x.float(), ops, torch.full((rows,), value))
    return out.numpy().astype(np.int64)


PIL_OPS = {
    "autocontrast": lambda img, v: ImageOps.autocontrast(img),
    "brightness": lambda img, v: ImageEnhance.Brightness(img).enhance(v),
    "color": lambda img, v: ImageEnhance.Color(img).enhance(v),
    "contrast": lambda img, v: ImageEnhance.Contrast(img).enhance(v),
    "equalize": lambda img, v: ImageOps.equalize(img),
    "identity": lambda img, v: img,
    "posterize": lambda img, v: ImageOps.posterize(img, int(v)),
    "sharpness": lambda img, v: ImageEnhance.Sharpness(img).enhance(v),
    "solarize": lambda img, v: ImageOps.solarize(img, v),
    "rotate": lambda img, v: img.rotate(v),
    "shear_x": lambda img, v: img.transform(img.size, Image.AFFINE, (1, v, 0, 0, 1, 0)),
    "shear_y": lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, 0, v, 1, 0)),
    "translate_x": lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, v * img.size[0], 0, 1, 0)),
    "translate_y": lambda img, v: img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, v * img.size[1])),
}
VALUES = {
    "autocontrast": 0.5,
    "brightness": 0.35,
    "color": 0.4,
    "contrast": 0.6,
    "equalize": 0.5,
    "identity": 0.5,
    "posterize": 5.7,
    "sharpness": 0.3,
    "solarize": 131.0,
    "rotate": 23.0,
    "shear_x": 0.25,
    "shear_y": -0.2,
    "translate_x": 0.25,
    "translate_y": -1 / 6,
}


@pytest.mark.parametrize("name", NAMES)
def test_each_operation_matches_pil(name: str) -> None:
    x = images()
    value = VALUES[name]
    got = ekd_op(x, name, value)
    want = np.stack([from_pil(PIL_OPS[name](to_pil(img), value)) for img in x])
    diff = np.abs(got - want)
    if name == "rotate":  # a source point on a pixel border may round to the neighbour (0.2% at 32x32)
        assert (diff == 0).mean() >= 0.98, (name, (diff == 0).mean())
        return
    # blends are truncated to 8 bits as PIL does; float rounding may still differ by one level
    assert diff.max() <= 1, (name, diff.max())
    assert (diff == 0).mean() >= 0.97, (name, (diff == 0).mean())


def test_each_row_gets_its_own_operation() -> None:
    x = images(n=len(NAMES))
    ops = torch.arange(len(NAMES))
    values = torch.tensor([VALUES[n] for n in NAMES])
    together = apply_operations(x.float(), ops, values)
    for row, name in enumerate(NAMES):
        alone = ekd_op(x[row : row + 1], name, VALUES[name])
        assert np.array_equal(together[row : row + 1].numpy().astype(np.int64), alone), name


def test_cutout_fills_an_inclusive_square_with_grey() -> None:
    x = torch.zeros((2, 3, 10, 10))
    # side 0.4 * 10 = 4 around centre (5, 3): x0 = 3, y0 = 1, inclusive to 7 and 5; row 2: no box
    draws = torch.tensor([[0.8, 0.0], [0.5, 0.5], [0.3, 0.5]])
    out = cutout(x, draws)
    box = torch.zeros((10, 10), dtype=torch.bool)
    box[1:6, 3:8] = True
    assert torch.equal(out[0, 0] != 0, box)
    assert out[0, :, 1, 3].tolist() == [125.0, 123.0, 114.0]
    assert not out[1].any()


def test_rand_augment_is_seeded_by_the_generator_and_stays_in_range() -> None:
    x = images(n=16).float()
    a = rand_augment(x, torch.Generator().manual_seed(5))
    b = rand_augment(x, torch.Generator().manual_seed(5))
    c = rand_augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 255 and torch.equal(a, a.floor())


def test_strong_view_of_a_training_batch() -> None:
    data = synthetic_dataset(train=32, test=8, size=8)
    runtime = Runtime(EngineOptions(device="cpu", quiet=True, channels_last=False))
    batches = make_batches(data, "train", runtime, 16, train=True, generator=torch.Generator().manual_seed(0))
    batch = next(iter(batches))
    view = strong_view(batch, torch.Generator().manual_seed(1))
    assert view.shape == batch.images.shape and view.dtype == torch.float32
    assert not torch.equal(view, batch.images)
    assert torch.equal(view, strong_view(batch, torch.Generator().manual_seed(1)))
    # same normalization as the weak view: the pixels map back to 8-bit values
    assert batch.source is not None
    pixels = (view - batch.source.shift) / batch.source.scale
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
    evaluation = next(iter(make_batches(data, "test", runtime, 8, train=False)))
    with pytest.raises(UsageError, match="needs an in-memory dataset"):
        strong_view(evaluation, torch.Generator())
