"""Reading a component's options: one coercion and unknown-option check for every kind.

Options reach factories from TOML files, ``--set TABLE.KEY=VALUE`` and Python calls, so a
value may be typed or a string.  Each helper coerces and range-checks one value and raises a
:class:`~ekdcli.util.errors.UsageError` of one sentence that names the option, its owner (a
label such as ``distiller 'kd'``, see :func:`owner`), the bad value and what is accepted.
``None`` means "not given" throughout.  No torch here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

from ekdcli.util.errors import UsageError, did_you_mean

# Seeds: what torch's generators take (numpy gets seed % 2**32); the range docs/configuration.md gives.
MAX_SEED = 2**63 - 1

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def owner(kind: str, name: str) -> str:
    """The label options are reported under: ``owner("distiller", "kd")`` -> ``distiller 'kd'``."""
    return f"{kind} {name!r}"


def _fail(who: str, name: str, requirement: str, value: Any) -> UsageError:
    return UsageError(f"option {name!r} of {who} must be {requirement}, got {value!r}.")


def check_names(who: str, options: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Refuse option names the component does not take, listing the ones it does."""
    allowed = list(valid)
    unknown = sorted(set(options) - set(allowed))
    if not unknown:
        return
    hints = "".join(did_you_mean(key, allowed) for key in unknown)
    listed = ", ".join(allowed) if allowed else "none"
    raise UsageError(
        f"{who} has no option {', '.join(repr(u) for u in unknown)}; valid options are {listed}.{hints}"
    )


def given(options: Mapping[str, Any], name: str) -> bool:
    return options.get(name) is not None


def pick(options: Mapping[str, Any], name: str, default: Any) -> Any:
    """The given value of ``name``, else ``default``."""
    value = options.get(name)
    return default if value is None else value


def as_float(who: str, name: str, value: Any, *, positive: bool = False, non_negative: bool = False) -> float:
    """A finite number; ``positive`` / ``non_negative`` add the range check."""
    if isinstance(value, bool):
        raise _fail(who, name, "a number", value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(who, name, "a number", value) from None
    if not math.isfinite(number):
        raise _fail(who, name, "a finite number", value)
    if positive and number <= 0:
        raise _fail(who, name, "greater than 0", value)
    if non_negative and number < 0:
        raise _fail(who, name, "0 or more", value)
    return number


def as_int(who: str, name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number (``"10"`` and ``10.0`` are accepted) from ``minimum`` to ``maximum``."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
        if not math.isfinite(number) or number != int(number):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _fail(who, name, "an integer", value) from None
    whole = int(number)
    if minimum is not None and whole < minimum:
        raise _fail(who, name, f"at least {minimum}", value)
    if maximum is not None and whole > maximum:
        raise _fail(who, name, f"at most {maximum}", value)
    return whole


def as_seed(who: str, name: str, value: Any) -> int:
    """A random seed: a whole number from 0 to 2**63-1."""
    return as_int(who, name, value, minimum=0, maximum=MAX_SEED)


def as_rate(who: str, name: str, value: Any, *, allow_one: bool = False) -> float:
    """A fraction in (0, 1), or in (0, 1] with ``allow_one`` (an augmentation's rate: prefer
    :func:`augmentation_rate`; a partition's: :func:`partition_rates`)."""
    if allow_one:
        return augmentation_rate(who, name, value)
    rate = _number(who, name, value)
    if not 0.0 < rate < 1.0:
        raise UsageError(f"{_subject(who, name)} must be in (0, 1), got {value!r}.")
    return rate


def as_bool(who: str, name: str, value: Any) -> bool:
    """true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise _fail(who, name, "true or false", value)


def as_choice(who: str, name: str, value: Any, choices: Iterable[str]) -> str:
    valid = list(choices)
    text = str(value).strip().lower()
    if text not in valid:
        raise UsageError(
            f"option {name!r} of {who} must be one of {', '.join(valid)}, got {value!r}.{did_you_mean(text, valid)}"
        )
    return text


def as_pair(who: str, value: Any) -> tuple[str, str] | None:
    """``("teacher", "student")`` from a 2-sequence or a ``"teacher,student"`` string."""
    if value is None:
        return None
    parts: list[Any]
    if isinstance(value, str):
        sep = "," if "," in value else ":"
        parts = [p.strip() for p in value.split(sep)]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        parts = []
    if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
        raise UsageError(
            f"option 'pair' of {who} must name a teacher and a student, "
            f'e.g. ["resnet56", "resnet20"] or "resnet56,resnet20", got {value!r}.'
        )
    return parts[0], parts[1]


# ------------------------------------------------------------------ rates
# One rule per kind of rate (docs/method.md#rates-on-the-command-line), whoever reads it:
# an augmentation rate is a share of the samples, in (0, 1] (1.0 mixes every one); the low and
# high rates of an energy partition are each in (0, 1) and sum to at most 1, so one rate used for
# both sides (``--rate`` of a partition or of a temperature rule) is in (0, 0.5].


def _subject(who: str, name: str) -> str:
    """``option 'rate' of augmentation 'he-cutmix'``, or ``name`` itself (``--rate``) without an owner."""
    return f"option {name!r} of {who}" if who else name


def _number(who: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{_subject(who, name)} must be a number, got {value!r}.")
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{_subject(who, name)} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise UsageError(f"{_subject(who, name)} must be a finite number, got {value!r}.")
    return number


def augmentation_rate(who: str, name: str, value: Any) -> float:
    """The share of samples an augmentation mixes: in (0, 1].  ``who`` empty: ``name`` is a flag."""
    rate = _number(who, name, value)
    if not 0.0 < rate <= 1.0:
        raise UsageError(
            f"{_subject(who, name)} must be in (0, 1], got {value!r} (the share of samples mixed; 1 mixes "
            "every one)."
        )
    return rate


def partition_rates(
    who: str, low: Any, high: Any, names: tuple[str, str] = ("low_rate", "high_rate")
) -> tuple[float, float]:
    """The low and high rates of an energy partition: each in (0, 1), their sum at most 1."""
    rates = []
    for name, value in zip(names, (low, high), strict=True):
        rate = _number(who, name, value)
        if not 0.0 < rate < 1.0:
            raise UsageError(f"{_subject(who, name)} must be in (0, 1), got {value!r}.")
        rates.append(rate)
    if rates[0] + rates[1] > 1.0 + 1e-12:
        of = f" of {who}" if who else ""
        raise UsageError(
            f"{names[0]} + {names[1]}{of} must be at most 1, got {rates[0]:g} + {rates[1]:g}; lower one of them."
        )
    return rates[0], rates[1]


def both_sides_rate(who: str, name: str, value: Any) -> float:
    """One rate used as both the low and the high rate of a partition: in (0, 0.5] (low + high <= 1)."""
    rate = _number(who, name, value)
    if not 0.0 < rate <= 0.5:
        raise UsageError(
            f"{_subject(who, name)} must be in (0, 0.5], got {value!r} (it is both the low and the high "
            "share, and low + high is at most 1)."
        )
    return rate


# ---------------------------------------------------------- option records
# A component states its options once, as a frozen dataclass whose fields carry the default and,
# in ``field(metadata=...)`` (see :func:`option`), the help and the accepted values.  The registry
# derives ``info["options"]`` (the defaults) and ``info["option_help"]`` from it, ``ekd list``
# shows both, and :func:`read_options` checks a factory's keywords against it.  A plain dict of
# defaults still works as ``info["options"]`` (no help, no checks).

OptionRecord = Any  # a dataclass type (or instance) made with :func:`option` fields


@dataclasses.dataclass(frozen=True)
class Spec:
    """What an option accepts: ``kind`` is float, int, bool, choice, rate, pair, seed, text or any."""

    help: str = ""
    kind: str = "any"
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    choices: tuple[str, ...] = ()


def option(
    default: Any = None,
    help: str = "",
    *,
    kind: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    choices: Iterable[str] = (),
) -> Any:
    """A field of an option record: its default (``None`` = decided later) and what it accepts.

    ``kind`` defaults to the default's type (float, int, bool, or ``choice`` when ``choices``).
    """
    if kind is None:
        kind = "choice" if choices else _kind_of(default)
    spec = Spec(help, kind, minimum, maximum, positive, tuple(choices))
    return dataclasses.field(default=default, metadata={"ekd": spec})


def _kind_of(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    return "any"


def is_record(options: Any) -> bool:
    """Whether ``options`` is an option record (a dataclass type or instance) rather than a dict."""
    return dataclasses.is_dataclass(options)


def spec_of(item: dataclasses.Field[Any]) -> Spec:
    spec = item.metadata.get("ekd")
    return spec if isinstance(spec, Spec) else Spec(kind=_kind_of(item.default))


def defaults(options: OptionRecord | Mapping[str, Any]) -> dict[str, Any]:
    """``{name: default}`` of a record (in field order), or a copy of a plain dict of defaults."""
    if is_record(options):
        return {f.name: f.default for f in dataclasses.fields(cast(Any, options))}
    return dict(options)


def option_help(options: OptionRecord | Mapping[str, Any]) -> dict[str, str]:
    """``{name: help}`` of the record's options that have help (none for a plain dict)."""
    if not is_record(options):
        return {}
    return {f.name: spec_of(f).help for f in dataclasses.fields(cast(Any, options)) if spec_of(f).help}


def option_names(record: OptionRecord) -> list[str]:
    """The names of a record's options, in order."""
    return [f.name for f in dataclasses.fields(record)]


def read_option(who: str, name: str, value: Any, spec: Spec) -> Any:
    """``value`` coerced and range-checked as ``spec`` says (``None`` stays ``None``)."""
    if value is None:
        return None
    if spec.kind == "float":
        number = as_float(who, name, value, positive=spec.positive, non_negative=spec.minimum == 0)
        if spec.minimum is not None and number < spec.minimum:
            raise _fail(who, name, f"at least {spec.minimum:g}", value)
        if spec.maximum is not None and number > spec.maximum:
            raise _fail(who, name, f"at most {spec.maximum:g}", value)
        return number
    readers: dict[str, Any] = {
        "int": lambda: as_int(
            who,
            name,
            value,
            minimum=None if spec.minimum is None else int(spec.minimum),
            maximum=None if spec.maximum is None else int(spec.maximum),
        ),
        "bool": lambda: as_bool(who, name, value),
        "choice": lambda: as_choice(who, name, value, spec.choices),
        "rate": lambda: augmentation_rate(who, name, value),
        "seed": lambda: as_seed(who, name, value),
        "pair": lambda: as_pair(who, value),
        "text": lambda: str(value),
    }
    reader = readers.get(spec.kind)
    return value if reader is None else reader()


def read_options(who: str, record: OptionRecord, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every option of ``record``: the given ones coerced and checked, the others their defaults.

    Unknown names are refused (listing the valid ones); ``None`` means "not given".
    """
    fields = dataclasses.fields(record)
    check_names(who, options, [f.name for f in fields])
    out = {}
    for item in fields:
        value = options.get(item.name)
        out[item.name] = item.default if value is None else read_option(who, item.name, value, spec_of(item))
    return out
