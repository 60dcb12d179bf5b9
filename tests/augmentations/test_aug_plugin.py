"""Registration through the plugin hook, the engine helper apply_mix, and one engine-like step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ekd_plugins.augmentations as plugin
import pytest
import torch
from ekd_plugins.augmentations.energy_mix import EnergyMix, he_cutmix

from ekdcli.sdk.contracts import EnergyContext, MixResult
from ekdcli.sdk.mixing import apply_mix
from ekdcli.sdk.plugins import discover
from ekdcli.util.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "cutmix": ("cutmix", "all", False),
    "mixup": ("mixup", "all", False),
    "he-cutmix": ("cutmix", "high", True),
    "he-mixup": ("mixup", "high", True),
    "le-cutmix": ("cutmix", "low", True),
    "le-mixup": ("mixup", "low", True),
    "mixed-cutmix": ("cutmix", "mixed", True),
    "mixed-mixup": ("mixup", "mixed", True),
}


def test_every_variant_is_registered_with_its_info_and_builds() -> None:
    registry = discover([("augmentations", plugin, "ekd", "0")]).registries["augmentations"]
    assert registry.names() == sorted(EXPECTED)
    for name, (kind, selection, needs_energy) in EXPECTED.items():
        component = registry.get(name)
        assert isinstance(component.factory, str) and component.description
        options = component.info.pop("options")
        assert set(component.info.pop("option_help")) == set(options)  # every option has its help line
        assert component.info == {"needs_energy": needs_energy, "selection": selection, "kind": kind}
        component.info["options"] = options
        # the advertised defaults are the options a build without any gets
        assert options["rate"] == (1.0 if selection == "all" else 0.2)
        assert options["alpha"] == {"cutmix": 1.0, "mixup": 0.2}[kind]
        assert component.build().options.as_dict() == options
        aug = component.build(rate=1.0) if selection == "all" else component.build(rate=0.3)
        assert isinstance(aug, EnergyMix)
        assert (aug.name, aug.kind, aug.selection.side, aug.needs_energy) == (
            name,
            kind,
            selection,
            needs_energy,
        )
    assert registry.get("he-da").name == "he-cutmix" and registry.get("mixed_mixup").name == "mixed-mixup"


def test_importing_the_plugin_does_not_import_torch() -> None:
    code = "import sys, ekd_plugins.augmentations; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def make_mix(images: torch.Tensor, rows: list[int]) -> MixResult:
    index = torch.tensor(rows, dtype=torch.long)
    return MixResult(
        images=-images[index] - 1.0,  # recognisably different from every input row
        labels_a=index,
        labels_b=index,
        lam=torch.full((len(rows),), 0.5),
        rows=index,
        partner_rows=index,
    )


def test_apply_mix_extra_appends_exactly_the_mixed_rows() -> None:
    images = torch.rand(5, 3, 4, 6)
    mix = make_mix(images, [1, 3])
    applied = apply_mix(images, mix, "extra")
    seen, mixed = applied.images, applied.mixed_mask()
    assert seen.shape == (7, 3, 4, 6)
    assert mixed.tolist() == [False] * 5 + [True, True]
    assert torch.equal(seen[:5], images) and torch.equal(seen[mixed], mix.images)
    assert applied.clean_rows.tolist() == [0, 1, 2, 3, 4] and applied.mixed_rows.tolist() == [5, 6]


def test_apply_mix_replace_keeps_the_batch_size_and_the_other_rows() -> None:
    images = torch.rand(5, 1, 3, 2)
    mix = make_mix(images, [0, 4])
    applied = apply_mix(images, mix, "replace")
    seen, mixed = applied.images, applied.mixed_mask()
    assert seen.shape == images.shape
    assert mixed.tolist() == [True, False, False, False, True]
    assert torch.equal(seen[mixed], mix.images) and torch.equal(seen[~mixed], images[~mixed])
    assert not torch.equal(images[0], seen[0])  # the input batch itself is not modified in place
    assert applied.clean_rows.tolist() == [1, 2, 3] and applied.mixed_rows.tolist() == [0, 4]
    with pytest.raises(UsageError, match="must be one of extra, replace"):
        apply_mix(images, mix, "sideways")


@pytest.mark.parametrize("mode", ["extra", "replace"])
def test_one_engine_like_step_trains_on_clean_and_mixed_rows(mode: str) -> None:
    torch.manual_seed(0)
    n, batch, classes = 40, 8, 3
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1 * 6 * 6, classes))
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1 * 6 * 6, classes)).eval()
    aug = he_cutmix(rate=0.5, mode=mode)
    aug.setup(EnergyContext(torch.randn(n), 4.0, "fp"))
    indices = torch.arange(batch) * 5
    images, labels = torch.randn(batch, 1, 6, 6), torch.randint(0, classes, (batch,))
    mask = aug.select(indices, None)
    mix = aug.mix(images, labels, mask, torch.Generator().manual_seed(0))
    applied = apply_mix(images, mix, aug.mode)
    seen, mixed = applied.images, applied.mixed_mask()
    s = student(seen)
    with torch.no_grad():
        t = teacher(seen)
    clean = torch.nn.functional.cross_entropy(s[~mixed], labels if mode == "extra" else labels[~mask])
    terms = aug.loss(s[mixed], t[mixed], mix, epoch=1)
    (clean + terms["mix_kd"]).backward()
    assert int(mixed.sum()) == int(mask.sum()) > 0
    assert student[1].weight.grad is not None and bool(torch.isfinite(student[1].weight.grad).all())
