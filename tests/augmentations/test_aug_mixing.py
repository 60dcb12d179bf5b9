"""CutMix and MixUp of selected rows: pixels, lambdas, partners, shapes and seeds."""

from __future__ import annotations

import pytest
import torch
from ekd_plugins.augmentations.mixing import box_masks, cutmix, cutmix_boxes, mixup
from scipy import stats

SHAPES = [(3, 32, 32), (1, 20, 28), (3, 7, 13), (1, 1, 1)]


def distinct_images(batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Every pixel of every image holds a different value, so a pixel's source is unambiguous."""
    return torch.arange(batch * channels * height * width, dtype=torch.float32).view(
        batch, channels, height, width
    )


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cutmix_pixels_come_from_a_partner_box_and_lambda_is_its_area(
    shape: tuple[int, int, int], seed: int
) -> None:
    c, h, w = shape
    batch = 12
    images = distinct_images(batch, c, h, w)
    labels = torch.arange(batch) * 10
    mask = torch.tensor([i % 3 != 1 for i in range(batch)])
    mix = cutmix(images, labels, mask, seeded(seed), alpha=1.0)

    assert torch.equal(mix.rows, torch.nonzero(mask).squeeze(1))
    # Partners: the first draw of the generator is a permutation of the whole batch.
    assert torch.equal(mix.partner_rows, torch.randperm(batch, generator=seeded(seed))[mix.rows])
    assert torch.equal(mix.labels_a, labels[mix.rows])
    assert torch.equal(mix.labels_b, labels[mix.partner_rows])
    assert mix.images.shape == (mix.rows.numel(), c, h, w)
    assert mix.lam.dtype == torch.float32

    for out, row, partner, lam in zip(mix.images, mix.rows, mix.partner_rows, mix.lam, strict=True):
        base, other = images[row], images[partner]
        if row == partner:  # a fixed point of the permutation mixes an image with itself
            assert torch.equal(out, base)
            continue
        from_partner = out == other
        assert bool(((out == base) ^ from_partner).all()), "each pixel is from the base xor the partner"
        box = from_partner[0]
        assert torch.equal(from_partner, box.expand_as(from_partner)), "the box is the same in every channel"
        area = int(box.sum())
        if area:
            ys, xs = torch.nonzero(box, as_tuple=True)
            rect = box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            assert bool(rect.all()) and rect.numel() == area, "the partner region is one axis-aligned box"
        assert abs(float(lam) - (1.0 - area / (h * w))) < 1e-6


def test_cutmix_boxes_match_hand_computed_boxes() -> None:
    lam = torch.tensor([0.75, 0.75, 0.5, 1.0, 0.0])
    cy = torch.tensor([10, 0, 10, 5, 16])
    cx = torch.tensor([20, 31, 14, 5, 16])
    # 32x32: side floor(32*sqrt(0.25)) = 16, half 8; non-square rows use H=20, W=28 below.
    y1, y2, x1, x2 = cutmix_boxes(lam, cy, cx, 32, 32)
    assert (y1[0], y2[0], x1[0], x2[0]) == (2, 18, 12, 28)
    assert (y1[1], y2[1], x1[1], x2[1]) == (0, 8, 23, 32)  # clipped at the top and right edges
    assert int((y2[3] - y1[3]) * (x2[3] - x1[3])) == 0  # lam 1: empty box
    assert (y1[4], y2[4], x1[4], x2[4]) == (0, 32, 0, 32)  # lam 0: the whole image
    # 20x28, lam 0.5: sides floor(20*0.7071) = 14 (half 7) and floor(28*0.7071) = 19 (half 9).
    y1, y2, x1, x2 = cutmix_boxes(lam[2:3], cy[2:3], cx[2:3], 20, 28)
    assert (int(y1), int(y2), int(x1), int(x2)) == (3, 17, 5, 23)
    masks = box_masks(y1, y2, x1, x2, 20, 28)
    assert masks.shape == (1, 20, 28) and int(masks.sum()) == 14 * 18
    assert bool(masks[0, 3:17, 5:23].all())


def test_cutmix_on_one_pixel_images_never_cuts() -> None:
    # floor(1 * sqrt(1 - lam)) // 2 == 0 for every lam: the box is empty and lam is exactly 1.
    batch = 300
    images = torch.zeros(batch, 1, 1, 1)
    mix = cutmix(
        images, torch.zeros(batch, dtype=torch.long), torch.ones(batch, dtype=torch.bool), seeded(9), 1.0
    )
    assert bool((mix.lam == 1.0).all())


def test_cutmix_is_reproducible_per_seed_and_varies_across_seeds() -> None:
    images = distinct_images(16, 3, 12, 12)
    labels = torch.arange(16)
    mask = torch.ones(16, dtype=torch.bool)
    a = cutmix(images, labels, mask, seeded(5), 1.0)
    b = cutmix(images, labels, mask, seeded(5), 1.0)
    c = cutmix(images, labels, mask, seeded(6), 1.0)
    for field in ("images", "lam", "rows", "partner_rows", "labels_b"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.images, c.images)


def test_cutmix_keeps_integer_images_and_handles_an_empty_selection() -> None:
    images = torch.randint(0, 256, (6, 3, 9, 11), dtype=torch.uint8, generator=seeded(0))
    mix = cutmix(images, torch.arange(6), torch.ones(6, dtype=torch.bool), seeded(1), 1.0)
    assert mix.images.dtype == torch.uint8
    empty = cutmix(images, torch.arange(6), torch.zeros(6, dtype=torch.bool), seeded(1), 1.0)
    assert empty.images.shape == (0, 3, 9, 11) and empty.lam.shape == (0,) and empty.rows.numel() == 0
    with pytest.raises(ValueError, match="bool tensor of shape"):
        cutmix(images, torch.arange(6), torch.ones(5, dtype=torch.bool), seeded(1), 1.0)


@pytest.mark.parametrize("shape", SHAPES)
def test_mixup_is_a_convex_blend_with_the_partner(shape: tuple[int, int, int]) -> None:
    batch = 10
    images = torch.randn((batch, *shape), generator=seeded(2))
    mask = torch.tensor([True, False] * 5)
    mix = mixup(images, torch.arange(batch), mask, seeded(3), alpha=0.2)
    assert torch.equal(mix.rows, torch.tensor([0, 2, 4, 6, 8]))
    assert torch.equal(mix.partner_rows, torch.randperm(batch, generator=seeded(3))[mix.rows])
    assert bool(((mix.lam >= 0) & (mix.lam <= 1)).all())
    weight = mix.lam.view(-1, 1, 1, 1)
    same_ops = weight * images[mix.rows] + (1 - weight) * images[mix.partner_rows]
    assert torch.equal(mix.images, same_ops)
    lam64 = mix.lam.double().view(-1, 1, 1, 1)
    in_float64 = lam64 * images[mix.rows].double() + (1 - lam64) * images[mix.partner_rows].double()
    assert torch.allclose(mix.images.double(), in_float64, atol=1e-6, rtol=0)


def test_mixup_lambda_follows_beta_alpha_alpha() -> None:
    batch = 3000
    images = torch.zeros(batch, 1, 1, 1)
    mix = mixup(
        images, torch.zeros(batch, dtype=torch.long), torch.ones(batch, dtype=torch.bool), seeded(4), 0.2
    )
    assert stats.kstest(mix.lam.double().numpy(), "beta", args=(0.2, 0.2)).pvalue > 1e-3


def test_mixup_reproducible_and_refuses_integer_images() -> None:
    images = torch.randn(8, 1, 5, 7, generator=seeded(0))
    mask = torch.ones(8, dtype=torch.bool)
    a = mixup(images, torch.arange(8), mask, seeded(1), 0.2)
    b = mixup(images, torch.arange(8), mask, seeded(1), 0.2)
    c = mixup(images, torch.arange(8), mask, seeded(2), 0.2)
    assert torch.equal(a.images, b.images) and torch.equal(a.lam, b.lam)
    assert not torch.equal(a.lam, c.lam)
    with pytest.raises(TypeError, match="floating-point"):
        mixup(images.to(torch.uint8), torch.arange(8), mask, seeded(1), 0.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixing_runs_on_cuda_with_a_cuda_generator() -> None:
    device = torch.device("cuda")
    images = distinct_images(32, 3, 16, 16).to(device)
    labels = torch.arange(32, device=device)
    mask = torch.rand(32, device=device) < 0.5
    for mixer, alpha in ((cutmix, 1.0), (mixup, 0.2)):
        a = mixer(images, labels, mask, torch.Generator(device).manual_seed(0), alpha)
        b = mixer(images, labels, mask, torch.Generator(device).manual_seed(0), alpha)
        assert a.images.device.type == "cuda" and torch.equal(a.images, b.images)
        assert torch.equal(a.rows, torch.nonzero(mask).squeeze(1))
