"""Option defaults, parsing and the messages users see for bad values."""

from __future__ import annotations

import pytest
from ekd_plugins.augmentations.energy_mix import cutmix, he_cutmix, he_mixup, le_mixup, mixed_cutmix, mixup

from ekdcli.util.errors import UsageError


def test_defaults_per_kind_and_selection() -> None:
    assert he_cutmix().options.alpha == 1.0 and he_mixup().options.alpha == 0.2
    assert he_cutmix().options.rate == 0.2 and le_mixup().options.rate == 0.2
    assert mixed_cutmix().options.rate == 0.2
    assert cutmix().options.rate == 1.0 and mixup().options.rate == 1.0
    aug = he_cutmix()
    assert (aug.mode, aug.options.source, aug.options.kd_weight, aug.options.temperature) == (
        "extra",
        "static",
        1.0,
        4.0,
    )
    assert aug.options.mixed_ce is False and aug.options.low_rule == "released"


def test_string_values_from_the_command_line_are_parsed() -> None:
    aug = he_mixup(rate="0.5", alpha="0.4", mixed_ce="yes", mode="Replace", source="online")
    assert aug.options.rate == 0.5 and aug.options.alpha == 0.4 and aug.options.mixed_ce is True
    assert aug.mode == "replace" and aug.options.source == "online"


def test_describe_records_every_option_and_the_selection() -> None:
    info = he_mixup(rate=0.3, kd_weight=2.0).describe()
    assert info["augment"] == "he-mixup" and info["kind"] == "mixup" and info["selection"] == "high"
    for key in ("mode", "rate", "source", "alpha", "kd_weight", "temperature", "mixed_ce", "low_rule"):
        assert key in info
    assert info["rate"] == 0.3 and info["kd_weight"] == 2.0


@pytest.mark.parametrize(
    ("factory", "options", "message"),
    [
        (he_cutmix, {"rat": 0.3}, r"no option 'rat'; valid options are rate, mode, .*Did you mean 'rate'"),
        (he_cutmix, {"rate": 0.0}, r"'rate' .* must be in \(0, 1\], got 0.0"),
        (he_cutmix, {"rate": 1.5}, r"must be in \(0, 1\]"),
        (he_cutmix, {"rate": "half"}, r"'rate' .* must be a number, got 'half'"),
        (he_cutmix, {"rate": True}, r"must be a number"),
        (he_cutmix, {"rate": float("nan")}, r"must be a finite number"),
        (he_cutmix, {"mode": "inplace"}, r"'mode' .* must be one of extra, replace, got 'inplace'"),
        (he_cutmix, {"source": "onlin"}, r"must be one of static, online.*Did you mean 'online'"),
        (he_cutmix, {"low_rule": "strict"}, r"must be one of released, paper"),
        (he_cutmix, {"alpha": 0}, r"'alpha' .* must be greater than 0"),
        (he_cutmix, {"kd_weight": -1}, r"'kd_weight' .* must be 0 or more"),
        (he_cutmix, {"temperature": 0}, r"'temperature' .* must be greater than 0"),
        (he_cutmix, {"mixed_ce": "maybe"}, r"'mixed_ce' .* must be true or false"),
        (cutmix, {"rate": 0.0}, r"'rate' .* must be in \(0, 1\], got 0.0"),
    ],
)
def test_bad_options_are_usage_errors_saying_what_is_valid(factory, options, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=message) as info:
        factory(**options)
    assert info.value.exit_code == 2
