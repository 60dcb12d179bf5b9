"""The teacher cache: exact logits per (sample, crop/flip view), never for mixed rows, rebuilt on change."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ekdcli.engine import EngineOptions, Objective, Recipe, Runtime, fit, make_batches
from ekdcli.engine.pipeline import decode_view, view_code, view_count
from ekdcli.engine.testing import TinyNet, synthetic_dataset
from ekdcli.method.objective import DistillObjective
from ekdcli.method.teacher_cache import TeacherCache, build_key, dataset_fingerprint
from ekdcli.sdk.contracts import EnergyContext
from ekdcli.sdk.energy import energy
from ekdcli.sdk.plugins import registry
from ekdcli.util.errors import JobError, UsageError

PADDING = 2
DATA = synthetic_dataset(train=96, test=16, padding=PADDING)  # 8x8 images, 4 classes, 50 views
OPTIONS = EngineOptions(device="cpu", precision="fp32", quiet=True)
RECIPE = Recipe(epochs=2, batch_size=32, lr=0.1)
SHA = "a" * 64


class CountingTeacher(nn.Module):
    """A teacher that counts its calls and the rows it was shown."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += int(x.shape[0])
        return self.inner(x)


class Recording(Objective):
    """Wraps an objective: keeps each step's losses, batch (indices, views) and mixed-row count."""

    def __init__(self, objective: DistillObjective) -> None:
        self.objective = objective
        self.losses: list[dict[str, float]] = []
        self.views: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.augmented = 0.0

    def setup(self, runtime: Runtime, num_epochs: int = 1) -> None:
        self.objective.setup(runtime, num_epochs)

    def __call__(self, model: nn.Module, batch: Any, epoch: int, generator: torch.Generator) -> Any:
        out = self.objective(model, batch, epoch, generator)
        self.losses.append({k: float(v.detach()) for k, v in out.losses.items()})
        self.views.append((batch.indices.clone(), batch.views.clone()))
        self.augmented += float(out.stats.get("augmented", 0.0))
        return out

    def describe(self) -> dict[str, Any]:
        return self.objective.describe()

    def distinct_views(self) -> set[tuple[int, int]]:
        return {(int(i), int(v)) for index, views in self.views for i, v in zip(index, views, strict=True)}


def make_teacher() -> CountingTeacher:
    torch.manual_seed(1)
    return CountingTeacher(TinyNet(classes=4))


def energy_context(teacher: CountingTeacher) -> EnergyContext:
    with torch.no_grad():
        logits = teacher.inner.eval()(_normalized(DATA.train_images))
    return EnergyContext(energies=energy(logits, 4.0).float(), energy_temperature=4.0, fingerprint="fp")


def _normalized(images_uint8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(DATA.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(DATA.std, dtype=torch.float64).view(1, -1, 1, 1)
    return ((images_uint8.double() / 255.0 - mean) / std).float()


def reference_view(image: torch.Tensor, dy: int, dx: int, flip: bool, padding: int) -> torch.Tensor:
    """torchvision's RandomCrop(pad) + flip, written independently: zero-pad, slice, mirror."""
    height, width = image.shape[1:]
    padded = F.pad(image, (padding, padding, padding, padding))
    crop = padded[:, dy : dy + height, dx : dx + width]
    return crop.flip(-1) if flip else crop


def distill(
    student: nn.Module,
    teacher: CountingTeacher,
    cache: TeacherCache | None,
    method: str = "kd",
    augment: dict[str, Any] | None = None,
    options: EngineOptions = OPTIONS,
) -> tuple[Recording, Any]:
    distiller = registry("distillers").get(method).build()
    context = energy_context(teacher) if (method.startswith("energy") or augment) else None
    augmentation = registry("augmentations").get("he-cutmix").build(**augment) if augment else None
    objective = Recording(DistillObjective(teacher, distiller, augmentation, context, teacher_cache=cache))
    result = fit(copy.deepcopy(student), DATA, objective, RECIPE, options, None)
    return objective, result


def open_cache(directory: Path, say: list[str] | None = None, **changes: Any) -> TeacherCache:
    key = dataclasses.replace(build_key(DATA, SHA, "fp32", "float32"), **changes)
    return TeacherCache.open(directory, key, say=say.append if say is not None else None)


def assert_close_losses(a: list[dict[str, float]], b: list[dict[str, float]]) -> None:
    assert len(a) == len(b) and a
    for step_a, step_b in zip(a, b, strict=True):
        assert step_a.keys() == step_b.keys()
        for name in step_a:
            bound = 1e-6 * max(abs(step_a[name]), 1e-12)
            assert abs(step_a[name] - step_b[name]) <= bound, (name, step_a, step_b)


# ---------------------------------------------------------------- views
def test_view_codes_are_a_bijection_onto_the_view_range() -> None:
    side = 2 * PADDING + 1
    dy, dx, flip = torch.meshgrid(torch.arange(side), torch.arange(side), torch.arange(2), indexing="ij")
    codes = view_code(dy.flatten(), dx.flatten(), flip.flatten().bool(), PADDING)
    assert sorted(codes.tolist()) == list(range(view_count(PADDING))) == list(range(50))
    assert view_count(4) == 162  # the CIFAR case: 9 * 9 crops x 2 flips
    back = decode_view(codes, PADDING)
    assert torch.equal(back[0], dy.flatten()) and torch.equal(back[1], dx.flatten())
    assert torch.equal(back[2], flip.flatten().bool())


def test_batch_views_reproduce_the_pipeline_crops_and_flips() -> None:
    runtime = Runtime(OPTIONS)
    batches = make_batches(DATA, "train", runtime, 32, train=True, generator=torch.Generator().manual_seed(5))
    seen_flips = set()
    for batch in batches.epoch():
        dy, dx, flips = decode_view(batch.views, PADDING)
        for row in range(len(batch)):
            image = DATA.train_images[int(batch.indices[row])]
            crop = reference_view(image, int(dy[row]), int(dx[row]), bool(flips[row]), PADDING)
            assert torch.allclose(batch.images[row], _normalized(crop[None])[0], atol=1e-5)
            seen_flips.add(bool(flips[row]))
    assert seen_flips == {False, True}
    test_batch = next(iter(make_batches(DATA, "test", runtime, 8, train=False)))
    assert test_batch.views is None  # evaluation rows are not augmented views


# ---------------------------------------------------------------- exactness
@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
@pytest.mark.parametrize(("method", "precision"), [("kd", "fp32"), ("energy_kd", "fp32"), ("kd", "bf16")])
def test_cache_gives_the_same_run_and_a_warm_run_never_calls_the_teacher(
    tmp_path: Path, method: str, precision: str
) -> None:
    """fp32 teachers are stored in float32; bf16 teachers in float16, which holds bf16 values exactly."""
    teacher = make_teacher()
    torch.manual_seed(2)
    student = TinyNet(classes=4)
    options = dataclasses.replace(OPTIONS, precision=precision)
    plain, plain_result = distill(student, teacher, None, method, options=options)
    key = build_key(DATA, SHA, precision)
    assert key.dtype == {"fp32": "float32", "bf16": "float16"}[precision]
    cache = TeacherCache.open(tmp_path / "cache", key)
    cold, cold_result = distill(student, teacher, cache, method, options=options)
    assert_close_losses(plain.losses, cold.losses)
    for name, value in plain_result.last_state.items():
        assert torch.allclose(value.float(), cold_result.last_state[name].float(), rtol=1e-5, atol=1e-6), name
    distinct = cold.distinct_views()
    assert cache.misses == len(distinct) == cache.filled_count()
    assert cache.hits == 2 * 96 - len(distinct)  # 2 epochs x 96 rows

    teacher.calls = 0
    cache.reset_counts()
    warm, warm_result = distill(student, teacher, cache, method, options=options)  # the same views again
    assert teacher.calls == 0 and cache.hits == 2 * 96 and cache.misses == 0
    assert_close_losses(plain.losses, warm.losses)
    for name, value in plain_result.last_state.items():
        assert torch.allclose(value.float(), warm_result.last_state[name].float(), rtol=1e-5, atol=1e-6), name
    assert warm_result.history[-1]["stats"]["teacher_cache_hits"] == 96.0


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_mlkd_strong_views_reach_the_teacher_but_never_the_cache(tmp_path: Path) -> None:
    teacher = make_teacher()
    torch.manual_seed(2)
    student = TinyNet(classes=4)
    plain, _ = distill(student, teacher, None, "mlkd")
    assert teacher.rows == 2 * 2 * 96  # clean and strong rows, one teacher call per step
    cache = open_cache(tmp_path / "cache")
    cold, _ = distill(student, teacher, cache, "mlkd")
    assert_close_losses(plain.losses, cold.losses)
    assert cache.filled_count() == len(cold.distinct_views())  # clean views only
    teacher.calls = teacher.rows = 0
    cache.reset_counts()
    warm, _ = distill(student, teacher, cache, "mlkd")
    assert cache.hits == 2 * 96 and cache.misses == 0
    assert teacher.rows == 2 * 96 and teacher.calls == 2 * 3  # only the strong views, one call per step
    assert_close_losses(plain.losses, warm.losses)


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_mixed_rows_are_never_cached(tmp_path: Path) -> None:
    teacher = make_teacher()
    torch.manual_seed(2)
    student = TinyNet(classes=4)
    cache = open_cache(tmp_path / "cache")
    run, _ = distill(student, teacher, cache, augment={"rate": 1.0, "mode": "extra"})
    assert run.augmented == 2 * 96  # every clean row also had a mixed copy
    distinct = run.distinct_views()
    assert cache.filled_count() == len(distinct)
    # every stored row is the teacher's logits of the *clean* view, recomputed here from scratch
    filled = np.argwhere(np.load(cache.filled_path) == 1)
    stored = np.load(cache.logits_path)[filled[:, 0], filled[:, 1]]
    assert {(int(i), int(v)) for i, v in filled} == distinct
    dy, dx, flips = decode_view(torch.from_numpy(filled[:, 1]), PADDING)
    crops = torch.stack(
        [
            reference_view(DATA.train_images[int(i)], int(y), int(x), bool(f), PADDING)
            for i, y, x, f in zip(filled[:, 0], dy, dx, flips, strict=True)
        ]
    )
    with torch.no_grad():
        expected = teacher.inner.eval()(_normalized(crops))
    assert torch.allclose(torch.from_numpy(stored), expected, atol=1e-5)

    replace = open_cache(tmp_path / "replace")
    teacher.rows = 0
    distill(student, teacher, replace, augment={"rate": 1.0, "mode": "replace"})
    assert teacher.rows == 2 * 96 and replace.filled_count() == 0  # every row was mixed in place


@pytest.mark.slow  # an end-to-end run: over 5 s on 2 cores (make test-fast skips it)
def test_online_energies_come_from_the_cache(tmp_path: Path) -> None:
    teacher = make_teacher()
    torch.manual_seed(2)
    student = TinyNet(classes=4)
    augment = {"rate": 0.5, "mode": "extra", "source": "online"}
    plain, _ = distill(student, teacher, None, augment=augment)
    cache = open_cache(tmp_path / "cache")
    distill(student, teacher, cache, augment=augment)
    teacher.rows = 0
    warm, _ = distill(student, teacher, cache, augment=augment)
    assert warm.augmented > 0 and teacher.rows == warm.augmented  # only the mixed rows were computed
    assert_close_losses(plain.losses, warm.losses)


# ---------------------------------------------------------------- files and keys
def test_reuse_and_rebuild_on_any_key_change(tmp_path: Path) -> None:
    directory, said = tmp_path / "cache", []
    cache = open_cache(directory, said)
    assert "created" in said[-1]
    header = json.loads(cache.header_path.read_text())
    assert header["teacher_sha256"] == SHA and header["views"] == 50 and header["dtype"] == "float32"

    logits = torch.arange(12, dtype=torch.float32).view(3, 4)
    index, views = torch.tensor([5, 7, 5]), torch.tensor([0, 49, 3])
    cache.teach(lambda x: logits[: x.shape[0]], torch.zeros(3, 3, 8, 8), index, views)
    del cache

    def refuse(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the teacher must not run on a full hit")

    again = open_cache(directory, said)
    assert "reused: 3 of 4800 views filled" in said[-1]
    clean, extra = again.teach(refuse, torch.zeros(3, 3, 8, 8), index, views)
    assert torch.equal(clean, logits) and extra is None

    open_cache(directory, said, teacher_sha256="b" * 64)
    assert "rebuilt (made for another teacher weights)" in said[-1]
    assert open_cache(directory, said, teacher_sha256="b" * 64).filled_count() == 0
    other_data = synthetic_dataset(train=96, test=16, padding=PADDING, seed=1)
    open_cache(directory, said, dataset_fingerprint=dataset_fingerprint(other_data))
    assert "rebuilt (made for another teacher weights, dataset)" in said[-1]

    again.header_path.unlink()
    open_cache(directory, said)
    assert "rebuilt (it has no header" in said[-1]
    fp16 = open_cache(directory, said, dtype="float16")  # another variant: separate files
    assert "created" in said[-1] and fp16.logits_path != again.logits_path
    open_cache(directory, said)
    assert "reused" in said[-1]


def test_dataset_fingerprint_sees_pixels_and_normalization_not_just_labels() -> None:
    base = dataset_fingerprint(DATA)
    pixels = DATA.train_images.clone()
    pixels[0, 0, 0, 0] ^= 1
    assert dataset_fingerprint(dataclasses.replace(DATA, train_images=pixels)) != base
    assert dataset_fingerprint(dataclasses.replace(DATA, mean=(0.4, 0.5, 0.5))) != base
    assert dataset_fingerprint(dataclasses.replace(DATA, crop_padding=4)) != base
    assert dataset_fingerprint(synthetic_dataset(train=96, test=16, padding=PADDING)) == base


def test_float16_storage_rounds_and_refuses_out_of_range_logits(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache", dtype="float16")
    values = torch.tensor([[0.1, -3.3333, 1000.7, 7.0]], dtype=torch.float32)
    index, views = torch.tensor([2]), torch.tensor([4])
    first, _ = cache.teach(lambda x: values, torch.zeros(1, 3, 8, 8), index, views)
    assert torch.equal(first, values)  # the computed logits themselves on a miss
    second, _ = cache.teach(lambda x: values * 0, torch.zeros(1, 3, 8, 8), index, views)
    assert torch.equal(second, torch.from_numpy(values.numpy().astype(np.float16).astype(np.float32)))
    with pytest.raises(JobError, match="float32"):
        cache.teach(lambda x: values * 100.0, torch.zeros(1, 3, 8, 8), torch.tensor([3]), views)
    assert build_key(DATA, SHA, "bf16").dtype == "float16" and build_key(DATA, SHA, "fp32").dtype == "float32"


def test_out_of_range_views_or_indices_are_refused(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    with pytest.raises(UsageError, match="view code 50 is outside the cache's 50 views"):
        cache.lookup(torch.tensor([0]), torch.tensor([50]))
    with pytest.raises(UsageError, match="sample index 96 is outside"):
        cache.lookup(torch.tensor([96]), torch.tensor([0]))
