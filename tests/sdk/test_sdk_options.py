"""ekdcli.sdk.options: one coercion module for every component kind, one sentence per mistake."""

from __future__ import annotations

import pytest

from ekdcli.sdk.options import (
    as_bool,
    as_choice,
    as_float,
    as_int,
    as_pair,
    as_rate,
    check_names,
    given,
    owner,
    pick,
)
from ekdcli.util.errors import UsageError

WHO = owner("dataset", "fake")


def test_owner_label_names_kind_and_component() -> None:
    assert WHO == "dataset 'fake'"


def test_values_from_toml_and_strings_are_coerced() -> None:
    assert as_int(WHO, "n", "12") == 12 and as_int(WHO, "n", 3.0) == 3 and as_int(WHO, "n", " 7 ") == 7
    assert as_float(WHO, "f", "0.5") == 0.5 and as_float(WHO, "f", 2) == 2.0
    assert (
        as_bool(WHO, "b", "yes") is True
        and as_bool(WHO, "b", "Off") is False
        and as_bool(WHO, "b", 1) is True
    )
    assert as_choice(WHO, "mode", " Extra ", ("extra", "replace")) == "extra"
    assert as_rate(WHO, "rate", "0.25") == 0.25 and as_rate(WHO, "rate", 1, allow_one=True) == 1.0
    assert as_pair(WHO, "resnet56, resnet20") == ("resnet56", "resnet20")
    assert as_pair(WHO, ["a", "b"]) == ("a", "b") and as_pair(WHO, None) is None
    assert given({"a": 0}, "a") and not given({"a": None}, "a") and not given({}, "a")
    assert pick({"a": None}, "a", 3) == 3 and pick({"a": 0}, "a", 3) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: as_int(WHO, "n", 2.5), "option 'n' of dataset 'fake' must be an integer, got 2.5."),
        (lambda: as_int(WHO, "n", True), "option 'n' of dataset 'fake' must be an integer, got True."),
        (lambda: as_int(WHO, "n", float("inf")), "must be an integer, got inf."),
        (lambda: as_int(WHO, "n", 0, minimum=1), "option 'n' of dataset 'fake' must be at least 1, got 0."),
        (lambda: as_float(WHO, "f", "abc"), "option 'f' of dataset 'fake' must be a number, got 'abc'."),
        (lambda: as_float(WHO, "f", False), "must be a number, got False."),
        (lambda: as_float(WHO, "f", "nan"), "must be a finite number, got 'nan'."),
        (lambda: as_float(WHO, "f", 0, positive=True), "must be greater than 0, got 0."),
        (lambda: as_float(WHO, "f", -1, non_negative=True), "must be 0 or more, got -1."),
        (
            lambda: as_bool(WHO, "b", "maybe"),
            "option 'b' of dataset 'fake' must be true or false, got 'maybe'.",
        ),
        (lambda: as_rate(WHO, "r", 1.0), "must be in (0, 1), got 1.0."),
        (
            lambda: as_rate(WHO, "r", 0, allow_one=True),
            "must be in (0, 1], got 0 (the share of samples mixed; 1 mixes every one).",
        ),
        (
            lambda: as_choice(WHO, "mode", "extr", ("extra", "replace")),
            "option 'mode' of dataset 'fake' must be one of extra, replace, got 'extr'. Did you mean 'extra'?",
        ),
        (
            lambda: as_pair(WHO, "resnet56"),
            "option 'pair' of dataset 'fake' must name a teacher and a student",
        ),
        (
            lambda: check_names(WHO, {"sede": 1, "noise": 2}, ("seed", "noise")),
            "dataset 'fake' has no option 'sede'; valid options are seed, noise. Did you mean 'seed'?",
        ),
        (lambda: check_names(WHO, {"x": 1}, ()), "dataset 'fake' has no option 'x'; valid options are none."),
    ],
)
def test_each_mistake_is_one_sentence_naming_option_owner_and_value(call, message: str) -> None:
    with pytest.raises(UsageError) as err:
        call()
    assert message in err.value.message
    assert err.value.exit_code == 2 and "\n" not in err.value.message


def test_known_names_pass() -> None:
    check_names(WHO, {"seed": 1}, ("seed", "noise"))  # no error
    check_names(WHO, {}, ())
