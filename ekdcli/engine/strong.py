"""Strongly augmented second views of a training batch, made on the device (docs/method.md#strong-views).

MLKD trains on a weak view (the usual random crop and flip) and a strong view of each image.
The authors' strong view (the MLKD-derived ``mdistiller/dataset/cifar100.py``) is an
independent random crop (zero padding) and flip, then ``RandAugment(2, 10)`` as FixMatch
defines it (two operations drawn with replacement from 14, each at a uniform random magnitude
in its range), then Cutout of a random square up to half the image side.  This module does the
same for a whole batch at once: no per-sample Python, every random draw from the engine's
device generator (seeded and checkpointed by the engine).  It follows PIL's definitions of the
operations (nearest-neighbour geometry with black fill, PIL's grayscale weights, its
equalization table) up to rounding; pixel-exact equality with PIL is not a goal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ekdcli.engine.pipeline import Batch, crop_flip, normalize
from ekdcli.util.errors import UsageError

# FixMatch's RandAugment list: (name, low, high) of the magnitude each operation draws.
OPERATIONS: tuple[tuple[str, float, float], ...] = (
    ("autocontrast", 0.0, 1.0),
    ("brightness", 0.05, 0.95),
    ("color", 0.05, 0.95),
    ("contrast", 0.05, 0.95),
    ("equalize", 0.0, 1.0),
    ("identity", 0.0, 1.0),
    ("posterize", 4.0, 8.0),
    ("rotate", -30.0, 30.0),
    ("sharpness", 0.05, 0.95),
    ("shear_x", -0.3, 0.3),
    ("shear_y", -0.3, 0.3),
    ("solarize", 0.0, 256.0),
    ("translate_x", -0.3, 0.3),
    ("translate_y", -0.3, 0.3),
)
NUM_OPS = 2  # RandAugment(n=2, ...)
CUTOUT_MAX = 0.5  # Cutout side: up to half the image side
CUTOUT_FILL = (125.0, 123.0, 114.0)
_GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
_GRAY = (0.299, 0.587, 0.114)  # PIL's "L" conversion


def strong_view(batch: Batch, generator: torch.Generator) -> torch.Tensor:
    """A strongly augmented view of every row of ``batch``, normalized like ``batch.images``."""
    source = batch.source
    if source is None:
        raise UsageError(
            "a strong view needs an in-memory dataset (CIFAR, digits, fake); this one is read from folders."
        )
    rows, device = int(source.index.shape[0]), source.images_uint8.device
    offsets = torch.randint(0, 2 * source.padding + 1, (2, rows), generator=generator, device=device)
    flips = torch.rand(rows, generator=generator, device=device) < 0.5
    if not source.hflip:
        flips = torch.zeros_like(flips)
    crops = crop_flip(source.images_uint8, offsets[0], offsets[1], flips, source.padding, index=source.index)
    pixels = rand_augment(crops.float(), generator)
    out = normalize(pixels, source.scale, source.shift)
    return out.contiguous(memory_format=torch.channels_last) if source.channels_last else out.contiguous()


def rand_augment(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``NUM_OPS`` random operations per image, then Cutout; ``pixels`` float ``[B, C, H, W]`` in [0, 255]."""
    rows, device = pixels.shape[0], pixels.device
    low = torch.tensor([op[1] for op in OPERATIONS], device=device)
    high = torch.tensor([op[2] for op in OPERATIONS], device=device)
    for _ in range(NUM_OPS):
        ops = torch.randint(0, len(OPERATIONS), (rows,), generator=generator, device=device)
        u = torch.rand(rows, generator=generator, device=device)
        pixels = apply_operations(pixels, ops, low[ops] + (high[ops] - low[ops]) * u)
    return cutout(pixels, torch.rand((3, rows), generator=generator, device=device))


def apply_operations(pixels: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """Row ``i`` gets operation ``OPERATIONS[ops[i]]`` at ``magnitudes[i]``; integer-valued result in [0, 255].

    Every operation is computed for the whole batch and each row keeps its own: a few times the
    work of one operation, no data-dependent shapes and so no device synchronisation.  Results are
    truncated to integers, as PIL's 8-bit blends and tables do.
    """
    names = [op[0] for op in OPERATIONS]
    geometric = torch.zeros_like(ops, dtype=torch.bool)
    for name in _GEOMETRIC:
        geometric |= ops == names.index(name)
    out = torch.where(_rows(geometric), _affine(pixels, ops, magnitudes), pixels)
    for name, fn in _POINTWISE.items():
        out = torch.where(_rows(ops == names.index(name)), fn(pixels, magnitudes), out)
    return out.clamp(0.0, 255.0).floor()


def _rows(mask: torch.Tensor) -> torch.Tensor:
    return mask[:, None, None, None]


def _per_row(values: torch.Tensor) -> torch.Tensor:
    return values[:, None, None, None]


def _gray(pixels: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` 8-bit luminance, rounded as PIL's ``convert("L")`` (the image itself when it
    has one channel)."""
    if pixels.shape[1] != 3:
        return pixels.mean(dim=1, keepdim=True).round()
    weights = torch.tensor(_GRAY, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    return torch.floor((pixels * weights).sum(dim=1, keepdim=True) + 0.5)


def _blend(degenerate: torch.Tensor, pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageEnhance``: ``degenerate + factor * (image - degenerate)``."""
    return degenerate + _per_row(factor) * (pixels - degenerate)


def _autocontrast(pixels: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    low = pixels.amin(dim=(2, 3), keepdim=True)
    high = pixels.amax(dim=(2, 3), keepdim=True)
    span = high - low
    stretched = (pixels - low) * (255.0 / span.clamp(min=1.0))
    return torch.where(span > 0, stretched, pixels)


def _brightness(pixels: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(pixels), pixels, v)


def _color(pixels: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _blend(_gray(pixels).expand_as(pixels), pixels, v)


def _contrast(pixels: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    mean = torch.floor(_gray(pixels).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
    return _blend(mean.expand_as(pixels), pixels, v)


def _equalize(pixels: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.equalize`` per image and channel, from batched 256-bin histograms."""
    b, c, h, w = pixels.shape
    values = pixels.reshape(b * c, h * w).round().clamp(0, 255).long()
    hist = torch.zeros((b * c, 256), device=pixels.device, dtype=torch.long)
    hist.scatter_add_(1, values, torch.ones_like(values))
    last = hist.gather(1, values.amax(dim=1, keepdim=True))  # count of the highest value present
    step = (h * w - last) // 255
    before = torch.cumsum(hist, dim=1) - hist
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp(max=255)
    mapped = lut.gather(1, values).to(pixels.dtype)
    return torch.where(step > 0, mapped, values.to(pixels.dtype)).reshape(b, c, h, w)


def _posterize(pixels: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Keep the top ``int(v)`` bits of each 8-bit value."""
    bucket = torch.pow(2.0, 8.0 - v.floor().clamp(1, 8))
    return torch.floor(pixels / _per_row(bucket)) * _per_row(bucket)


def _sharpness(pixels: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Blend with PIL's SMOOTH filter (3x3, centre 5, /13); border pixels stay as they are."""
    c = pixels.shape[1]
    kernel = torch.ones((3, 3), device=pixels.device, dtype=pixels.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = torch.nn.functional.conv2d(pixels, kernel, padding=1, groups=c).round()
    border = torch.ones_like(pixels[:1, :1], dtype=torch.bool)
    border[..., 1:-1, 1:-1] = False
    return _blend(torch.where(border, pixels, smooth), pixels, v)


def _solarize(pixels: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.where(pixels < _per_row(v), pixels, 255.0 - pixels)


_POINTWISE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "autocontrast": _autocontrast,
    "brightness": _brightness,
    "color": _color,
    "contrast": _contrast,
    "equalize": _equalize,
    "posterize": _posterize,
    "sharpness": _sharpness,
    "solarize": _solarize,
}


def _affine_matrices(ops: torch.Tensor, v: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, 2, 3]``: output pixel centre ``(x + .5, y + .5, 1)`` -> input point, as PIL's transforms
    (identity for rows whose operation is not geometric)."""
    names = [op[0] for op in OPERATIONS]
    m = torch.zeros((ops.shape[0], 2, 3), device=v.device, dtype=torch.float32)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    is_op = {name: ops == names.index(name) for name in _GEOMETRIC}
    m[:, 0, 1] = torch.where(is_op["shear_x"], v, m[:, 0, 1])
    m[:, 1, 0] = torch.where(is_op["shear_y"], v, m[:, 1, 0])
    m[:, 0, 2] = torch.where(is_op["translate_x"], v * width, m[:, 0, 2])
    m[:, 1, 2] = torch.where(is_op["translate_y"], v * height, m[:, 1, 2])
    # PIL's rotate(deg): counter-clockwise about the centre; input = R(-deg) (out - c) + c
    angle = -v * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    rot = torch.stack(
        [
            torch.stack([cos, sin, cx - cos * cx - sin * cy], dim=1),
            torch.stack([-sin, cos, cy + sin * cx - cos * cy], dim=1),
        ],
        dim=1,
    )
    return torch.where(is_op["rotate"][:, None, None], rot, m)


def _affine(pixels: torch.Tensor, ops: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour affine resampling with black fill, one matrix per row."""
    b, _, h, w = pixels.shape
    m = _affine_matrices(ops, v, h, w)
    ys = torch.arange(h, device=pixels.device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=pixels.device, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy, torch.ones_like(gx)], dim=0).reshape(3, h * w)  # [3, HW]
    src = torch.floor(m @ grid).long()  # [B, 2, HW]
    sx, sy = src[:, 0], src[:, 1]
    valid = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    flat = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1)).unsqueeze(1).expand(-1, pixels.shape[1], -1)
    gathered = pixels.reshape(b, pixels.shape[1], h * w).gather(2, flat)
    return (gathered * valid.unsqueeze(1).to(pixels.dtype)).reshape(pixels.shape)


def cutout(pixels: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """FixMatch's Cutout: a square of side ``s = U(0, 0.5) * W`` around a uniform centre, grey-filled.

    ``draws`` is ``[3, B]`` uniforms in [0, 1): side, centre x, centre y.  As PIL's rectangle, the
    box ``[x0, x0 + s] x [y0, y0 + s]`` (``x0 = int(max(0, cx - s / 2))``) includes both ends.
    """
    _, c, h, w = pixels.shape
    side = draws[0] * CUTOUT_MAX * w
    x0 = torch.floor((draws[1] * w - side / 2).clamp(min=0))
    y0 = torch.floor((draws[2] * h - side / 2).clamp(min=0))
    x1, y1 = (x0 + side).clamp(max=w), (y0 + side).clamp(max=h)
    cols = torch.arange(w, device=pixels.device, dtype=pixels.dtype)
    rows = torch.arange(h, device=pixels.device, dtype=pixels.dtype)
    in_x = (cols[None, :] >= x0[:, None]) & (cols[None, :] <= x1[:, None])
    in_y = (rows[None, :] >= y0[:, None]) & (rows[None, :] <= y1[:, None])
    box = (in_y[:, :, None] & in_x[:, None, :] & (side > 0)[:, None, None]).unsqueeze(1)
    fill = CUTOUT_FILL if c == 3 else (sum(CUTOUT_FILL) / 3,) * c
    colour = torch.tensor(fill, device=pixels.device, dtype=pixels.dtype).view(1, c, 1, 1)
    return torch.where(box, colour, pixels)
