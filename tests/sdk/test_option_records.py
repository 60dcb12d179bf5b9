"""Options stated once: a plugin's option record, its registry info and its factory agree; one rule per rate."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import pytest

from ekdcli.sdk.options import (
    augmentation_rate,
    both_sides_rate,
    defaults,
    option,
    option_help,
    partition_rates,
    read_options,
)
from ekdcli.sdk.plugins import discover
from ekdcli.sdk.registry import Component
from ekdcli.util.errors import UsageError

# The kinds whose factories take keyword options (models and trackers take none of a record's).
OPTION_KINDS = ("distillers", "temperature_rules", "augmentations", "datasets")


def _with_records() -> list[Component]:
    found = discover().registries
    return [c for kind in OPTION_KINDS for c in found[kind].list() if c.option_record is not None]


def test_every_first_party_option_table_is_a_record() -> None:
    """The first party's components state their options as records (a plain dict is the transition's)."""
    records = {(c.kind, c.name) for c in _with_records()}
    for name in ("kd", "dkd", "mlkd", "ctkd", "energy_kd", "energy_dkd", "ce"):
        assert ("distillers", name) in records
    for name in ("fixed", "energy", "gradation"):
        assert ("temperature_rules", name) in records
    features = ("fitnet", "at", "pkt", "rkd", "sp", "nst", "kdsvd", "vid", "ofd", "crd", "reviewkd")
    for name in features:
        assert ("distillers", name) in records
    # no first-party distiller is left on the plain-dict transition path
    found = discover().registries["distillers"].list()
    assert [c.name for c in found if c.plugin == "ekd.distillers" and c.option_record is None] == []
    assert ("datasets", "fake") in records
    assert ("augmentations", "he-cutmix") in records


@pytest.mark.parametrize("component", _with_records(), ids=lambda c: f"{c.kind}:{c.name}")
def test_registry_info_and_factory_agree_with_the_record(component: Component) -> None:
    record = component.option_record
    names = [f.name for f in dataclasses.fields(record)]
    # info["options"]: the record's defaults, in its order; the help of its fields
    assert list(component.info["options"].items()) == [
        (f.name, f.default) for f in dataclasses.fields(record)
    ]
    assert set(component.info.get("option_help", {})) <= set(names)
    # the factory refuses an unknown option by listing exactly the record's names
    with pytest.raises(UsageError) as caught:
        component.build(no_such_option=1) if component.kind != "datasets" else component.build(
            None, no_such_option=1
        )
    listed = re.search(r"valid options are (.*?)\.(?: Did|$)", str(caught.value))
    assert listed is not None, str(caught.value)
    assert listed.group(1).split(", ") == (names or ["none"])


@dataclass(frozen=True)
class Example:
    width: int = option(8, "a width", minimum=1, maximum=64)
    weight: float = option(0.5, "a weight", minimum=0.0)
    mode: str = option("a", "a mode", choices=("a", "b"))
    flag: bool = option(False, "a flag")
    share: float = option(1.0, "a share", kind="rate")
    later: float | None = option(None, "decided later", kind="float", positive=True)


def test_read_options_coerces_checks_and_fills_defaults() -> None:
    got = read_options("thing 'x'", Example, {"width": "16", "flag": "yes", "mode": "B", "later": None})
    assert got == {"width": 16, "weight": 0.5, "mode": "b", "flag": True, "share": 1.0, "later": None}
    assert defaults(Example) == {
        "width": 8,
        "weight": 0.5,
        "mode": "a",
        "flag": False,
        "share": 1.0,
        "later": None,
    }
    assert defaults({"a": 1}) == {"a": 1}  # a plain dict of defaults still works
    assert option_help(Example)["width"] == "a width" and option_help({"a": 1}) == {}
    for bad, message in (
        ({"width": 65}, "option 'width' of thing 'x' must be at most 64, got 65."),
        ({"weight": -1}, "option 'weight' of thing 'x' must be 0 or more, got -1."),
        ({"mode": "c"}, "option 'mode' of thing 'x' must be one of a, b, got 'c'."),
        ({"later": 0}, "option 'later' of thing 'x' must be greater than 0, got 0."),
        ({"share": 1.5}, "option 'share' of thing 'x' must be in (0, 1], got 1.5"),
        (
            {"widht": 3},
            "thing 'x' has no option 'widht'; valid options are width, weight, mode, flag, share, later.",
        ),
    ):
        with pytest.raises(UsageError) as caught:
            read_options("thing 'x'", Example, bad)
        assert str(caught.value).startswith(message)


def test_a_registered_record_becomes_defaults_and_help() -> None:
    component = Component("augmentations", "x", "m:f", "p", info={"options": Example})
    assert component.option_record is Example
    assert component.info["options"] == defaults(Example)
    assert component.info["option_help"]["mode"] == "a mode"
    plain = Component("distillers", "y", "m:f", "p", info={"options": {"w_feat": 1.0}})
    assert plain.option_record is None and plain.info["options"] == {"w_feat": 1.0}


def test_one_rule_per_rate() -> None:
    assert augmentation_rate("", "--rate", 1.0) == 1.0  # every sample mixed
    assert both_sides_rate("", "--rate", 0.5) == 0.5  # half low, half high
    assert partition_rates("", 0.3, 0.7) == (0.3, 0.7)
    with pytest.raises(UsageError, match=r"^--rate must be in \(0, 1\], got 0 "):
        augmentation_rate("", "--rate", 0)
    with pytest.raises(UsageError, match=r"^--rate must be in \(0, 0.5\], got 1.0 \(it is both the low and"):
        both_sides_rate("", "--rate", 1.0)
    with pytest.raises(UsageError, match=r"^low_rate \+ high_rate must be at most 1, got 0.6 \+ 0.5;"):
        partition_rates("", 0.6, 0.5)
    with pytest.raises(UsageError, match=r"^option 'high_rate' of rule 'r' must be in \(0, 1\), got 1.0\.$"):
        partition_rates("rule 'r'", 0.2, 1.0)


def test_rate_one_is_one_rule_for_every_consumer() -> None:
    """``1.0`` as an augmentation rate is accepted by the augmentation, the core and the bench; as the
    rate of both partition sides it is refused by the temperature rule, the core and the partition alike."""
    from ekd_plugins.augmentations.energy_mix import he_cutmix
    from ekd_plugins.temperature_rules.energy import make_energy

    from ekdcli.config import Config
    from ekdcli.jobs.bench import parse_rates
    from ekdcli.jobs.plan import plan_methods
    from ekdcli.method.partition import make_partition

    assert he_cutmix(rate=1.0).options.rate == 1.0
    assert parse_rates("0.5,1.0") == [0.5, 1.0]
    plan = plan_methods(
        Config(method="kd", teacher="resnet8", student="tiny_cnn", augment="he-cutmix", rate=1.0)
    )
    assert plan.augmentation_options["rate"] == 1.0
    refusals = []
    for refuse in (
        lambda: make_energy(rate=1.0),
        lambda: plan_methods(Config(method="energy_kd", teacher="resnet8", student="tiny_cnn", rate=1.0)),
        lambda: make_partition(__import__("torch").arange(10.0), 1.0, 1.0),
    ):
        with pytest.raises(UsageError) as caught:
            refuse()
        refusals.append(str(caught.value))
    assert all("must be in (0, 0.5], got 1.0 (it is both the low and the high share" in r for r in refusals)
