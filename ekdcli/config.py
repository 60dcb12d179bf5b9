"""Configuration: built-in defaults < TOML file (``--config`` or ``./ekd.toml``) < command-line flags.

The resolved configuration is a plain :class:`Config` value handed to the jobs;
nothing here is global.  Unknown keys and wrong types are reported all at
once, each with its file and key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ekdcli.sdk.energy import ENERGY_TEMPERATURE
from ekdcli.sdk.options import MAX_SEED
from ekdcli.util.errors import UsageError, closest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG_FILE = "ekd.toml"
DEFAULT_DATA = "digits"  # the embedded default: real handwritten digits shipped by scikit-learn
DEFAULT_PAIR = ("resnet32", "resnet8")  # teacher / student when nothing is configured

# Option tables handed to plugin factories as keyword arguments; their keys are
# checked by the plugin that receives them.
OPTION_TABLES = ("train", "data_options", "distiller", "temperature", "energy", "augmentation")


@dataclass
class Config:
    """Every setting of every command; each field is also a TOML key and (mostly) a flag."""

    # where things are
    store: str = "./ekd-store"
    data: str = DEFAULT_DATA
    data_root: str | None = None
    download: bool = False
    # models: registered names, store names or .safetensors paths
    model: str | None = None
    teacher: str | None = None
    student: str | None = None
    # method
    method: str = "energy_kd"
    temperature_rule: str | None = None  # None: the method's own (fixed for kd/dkd, energy for energy_kd)
    augment: str | None = None
    rate: float | None = None
    low_rate: float | None = None
    high_rate: float | None = None
    energy_temperature: float = ENERGY_TEMPERATURE
    # training recipe (a named preset; the fields below override it)
    recipe: str = "auto"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    # runtime
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = False
    teacher_cache: bool = False
    teacher_cache_dtype: str = "auto"
    run_name: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    # experiment trackers (ekd list trackers) beside the run directory's own record
    track: list[str] = field(default_factory=list)
    tracking_uri: str | None = None
    quiet: bool = False
    verbose: bool = False
    debug: bool = False
    json: bool = False
    # plugin option tables
    train: dict[str, Any] = field(default_factory=dict)
    data_options: dict[str, Any] = field(default_factory=dict)
    distiller: dict[str, Any] = field(default_factory=dict)
    temperature: dict[str, Any] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=dict)
    augmentation: dict[str, Any] = field(default_factory=dict)
    # where the values came from (not a key): "default", a file path, or "flag"
    sources: dict[str, str] = field(default_factory=dict, repr=False)

    def store_root(self) -> Path:
        """``EKD_HOME`` wins over the default store; an explicit setting wins over both."""
        if self.sources.get("store", "default") == "default" and os.environ.get("EKD_HOME"):
            return Path(os.environ["EKD_HOME"]).expanduser()
        return Path(self.store).expanduser()

    def to_toml(self) -> str:
        """The resolved configuration as TOML (written into every run directory)."""
        return dumps_toml({k: v for k, v in self.as_dict().items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sources"}


# counts no run can use below 1: refused where a file, --set or --grid sets them (the flags are
# refused by the recipe and the engine options, in their words)
_AT_LEAST_ONE = ("epochs", "batch_size", "limit_train", "limit_test", "eval_every")


def config_keys() -> list[str]:
    """Every configuration key (docs/configuration.md), as the Python API's keywords."""
    return list(_fields())


def _fields() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "sources"}


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if origin in (list, tuple):  # track (names), the recipe's milestones (integers): TOML lists
        item = typing.get_args(annotation)[0]
        return isinstance(value, (list, tuple) if origin is tuple else list) and all(
            _type_ok(v, item) for v in value
        )
    if annotation is float:
        return _finite_number(value)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_SEED
    if annotation is Any:
        return True
    return isinstance(value, annotation)


def _finite_number(value: Any) -> bool:
    """An int or float that is not NaN or infinite (``inf``/``nan`` are valid TOML, never valid here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is dict or annotation is dict:
        return "a table"
    if typing.get_origin(annotation) in (list, tuple):  # the trackers, the recipe's milestones
        return f"a list of {_type_name(typing.get_args(annotation)[0]).split(' ', 1)[-1]}s"
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args:
        return " or ".join(_type_name(a) for a in args)
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        annotation, str(annotation)
    )


def _requirement(value: Any, annotation: Any) -> str:
    """What a value of ``annotation``'s type must be, said for the ``value`` that was given."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SEED:
        return f"{_type_name(annotation)} of at most 2**63-1 in size"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{_type_name(annotation)} that is finite (not inf or nan)"
    return _type_name(annotation)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    file = Path(path)
    if not file.exists():
        raise UsageError(f"config file {file} does not exist; check the --config path.")
    if not file.is_file():  # a directory, a FIFO, /dev/zero: reading it would fail or never end
        kind = "a directory" if file.is_dir() else "not a regular file"
        raise UsageError(f"config file {file} is {kind}; give a TOML file to --config.")
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {file} is not valid TOML ({exc}).") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"config file {file} is not valid TOML (it is not UTF-8 text: byte {exc.start} cannot be "
            "decoded); check the --config path."
        ) from exc


def line_of(path: str | os.PathLike[str] | None, key: str, table: str | None = None) -> int | None:
    """The line of ``path`` that sets ``key`` (of ``[table]``): tomllib keeps no line numbers, so the
    text is scanned for ``key =`` under the table's header (or ``table.key =`` at the top)."""
    if path is None:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    wanted = {(table, key), (None, f"{table}.{key}" if table else key)}
    current: str | None = None
    for number, line in enumerate(lines, start=1):
        header = re.match(r"\s*\[\s*([\w.-]+)\s*\]", line)
        if header:
            current = header.group(1)
            continue
        found = re.match(r"""\s*["']?([\w.-]+)["']?\s*=""", line)
        if found and (current, found.group(1)) in wanted:
            return number
    return None


def _at(path: str | os.PathLike[str] | None, key: str, table: str | None = None) -> str:
    number = line_of(path, key, table)
    return f" (line {number})" if number else ""


def _recipe_fields() -> dict[str, Any]:
    """The ``[train]`` keys and their types: the fields of the training recipe."""
    from ekdcli.engine.recipe import Recipe  # imports torch: only when a [train] table is given

    hints = typing.get_type_hints(Recipe)
    return {f.name: hints[f.name] for f in dataclasses.fields(Recipe)}


def train_problems(table: dict[str, Any], path: str | os.PathLike[str] | None = None) -> list[str]:
    """What is wrong with the keys and value types of a ``[train]`` table (``path``: its file)."""
    if not table:
        return []
    schema = _recipe_fields()
    problems: list[str] = []
    for key, value in table.items():
        at = _at(path, key, "train")
        if key not in schema:
            number, hits = line_of(path, key, "train"), closest(key, schema, n=1)
            notes = [f"line {number}"] if number else []
            notes += [f"did you mean '{hits[0]}'?"] if hits else []
            notes.append(f"the [train] keys are {', '.join(sorted(schema))}")
            problems.append(f"unknown key 'train.{key}' ({'; '.join(notes)})")
        elif not _type_ok(value, schema[key]):
            problems.append(f"'train.{key}' must be {_requirement(value, schema[key])}, not {value!r}{at}")
        elif key in _AT_LEAST_ONE and value < 1:
            problems.append(f"'train.{key}' must be at least 1, not {value}{at}")
    return problems


def validate(raw: dict[str, Any], origin: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Check keys and types of a config mapping; one error lists every problem (with its line in
    ``path``, the file ``raw`` was read from)."""
    schema = _fields()
    problems: list[str] = []
    for key, value in raw.items():
        name = key.replace("-", "_")
        at = _at(path, key)
        if name not in schema:
            problems.append(f"unknown key '{key}'{at}")
        elif not _type_ok(value, schema[name]):
            problems.append(f"'{key}' must be {_requirement(value, schema[name])}, not {value!r}{at}")
        elif isinstance(value, str) and not value.strip():  # '' would mean "here" or "the default"
            problems.append(f"'{key}' is empty (give a value or leave it out){at}")
        elif isinstance(value, str) and "\x00" in value:  # no file name or name can hold one
            problems.append(f"'{key}' holds a NUL character ({value!r}){at}")
        elif name in _AT_LEAST_ONE and value is not None and value < 1 and origin != "command line":
            problems.append(f"'{key}' must be at least 1, not {value}{at}")
        elif name == "seed" and not 0 <= value <= MAX_SEED:
            problems.append(f"'seed' must be from 0 to 2**63-1, not {value}{at}")
        elif name == "train":
            problems += train_problems(value, path)
    if problems:
        raise UsageError(f"{origin}: " + "; ".join(problems) + ". See 'ekd <command> --help' for the keys.")
    return {key.replace("-", "_"): value for key, value in raw.items()}


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``--set`` values: ``KEY=VALUE`` or ``TABLE.KEY=VALUE``, VALUE read as TOML (``2``, ``true``,
    ``[150, 180]``, ``"text"``) or else taken as plain text; the result has the shape of a TOML file."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or len(parts) > 2 or not all(parts):
            raise UsageError(
                f"--set wants KEY=VALUE or TABLE.KEY=VALUE (e.g. energy.t_low_energy=2), not {item!r}."
            )
        if len(parts) == 2 and parts[0] not in OPTION_TABLES:
            raise UsageError(
                f"--set {item}: {parts[0]!r} is not an option table; the tables are {', '.join(OPTION_TABLES)}."
            )
        try:
            value = tomllib.loads(f"value = {text.strip()}")["value"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        if len(parts) == 2:
            out.setdefault(parts[0], {})[parts[1]] = value
        else:
            out[key] = value
    return out


def resolve(
    flags: dict[str, Any] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    assigned: dict[str, Any] | None = None,
    project_file: bool = True,
) -> Config:
    """Defaults < config file (explicit, else ``./ekd.toml`` if present and ``project_file``) <
    ``assigned`` (``--set``) < flags (``None`` = not given).  Each layer is checked on its own, so
    an error names its origin.

    ``sources`` says where each value came from: per key, and per ``TABLE.KEY`` of option tables.
    """
    config = Config()
    sources = {name: "default" for name in _fields()}
    path = Path(config_file) if config_file else Path(cwd or ".") / DEFAULT_CONFIG_FILE
    if config_file or (project_file and path.is_file()):
        from_file = validate(read_toml(path), str(path), path)
        for key, value in from_file.items():
            setattr(config, key, dict(value) if isinstance(value, dict) else value)
            _note_source(sources, key, value, str(path))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    for layer, origin in ((assigned or {}, "--set"), (given, "command line")):
        for key, value in validate(layer, origin).items():
            if key in OPTION_TABLES:  # flags add to a table instead of replacing it
                getattr(config, key).update(value)
            else:
                setattr(config, key, value)
            _note_source(sources, key, value, "flag")
    if config.data_root:
        config.data_root = os.path.expanduser(config.data_root)
    if sources["data"] == "default" and config.data_root:  # never train the default data on another's files
        from ekdcli.sdk.recognize import recognize_data_root

        config.data = recognize_data_root(config.data_root)
        sources["data"] = f"recognized from {config.data_root}"
    config.sources = sources
    return config


def _note_source(sources: dict[str, str], key: str, value: Any, origin: str) -> None:
    sources[key] = origin
    if key in OPTION_TABLES and isinstance(value, dict):
        sources.update({f"{key}.{sub}": origin for sub in value})


def split_foreign_options(
    config: Config, table: str, values: dict[str, Any], accepted: Iterable[str] | None, known: Iterable[str]
) -> tuple[dict[str, Any], list[str]]:
    """``values`` of option table ``table`` without the keys a project file set for other components.

    A key the chosen component does not take (not in ``accepted``; ``None``: it declares nothing, so
    nothing is dropped) but another one does (in ``known``) is dropped when it came from a config
    file, which serves several methods; given on the command line it stays, and the component
    rejects it.  Returns the kept values and the dropped keys.
    """
    if accepted is None:
        return dict(values), []
    allowed, others = set(accepted), set(known)
    dropped = [
        key
        for key in values
        if key not in allowed
        and key in others
        and config.sources.get(f"{table}.{key}", config.sources.get(table, "default"))
        not in ("flag", "default")
    ]
    return {k: v for k, v in values.items() if k not in dropped}, dropped


def foreign_note(config: Config, table: str, dropped: list[str], target: str) -> str:
    """The note for options :func:`split_foreign_options` dropped: which, set where, and for what."""
    files = {config.sources.get(f"{table}.{key}", config.sources.get(table, "default")) for key in dropped}
    where = ", ".join(sorted(files - {"flag", "default"}))
    verb = "does" if len(dropped) == 1 else "do"
    return f"note: [{table}] {', '.join(dropped)} in {where} {verb} not apply to {target}; ignored."


@contextlib.contextmanager
def naming_origin(config: Config, *tables: str) -> Iterator[None]:
    """Add the file (and line) that set the option ``tables`` to a UsageError raised while a plugin
    reads them.

    Top-level keys are checked here, with their file; a table's keys are checked by the plugin that
    receives them, which does not know where they came from.
    """
    try:
        yield
    except UsageError as exc:
        files = sorted({config.sources.get(table, "default") for table in tables} - {"default", "flag"})
        if not files:
            raise
        option = re.search(r"option '([\w.-]+)'", exc.message)
        places = []
        for file in files:
            numbers = [line_of(file, option.group(1), table) for table in tables] if option else []
            number = next((n for n in numbers if n), None)
            places.append(f"{file} line {number}" if number else file)
        raise UsageError(f"{exc.message.rstrip('.')} (set in {', '.join(places)}).") from exc


def dumps_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for flat keys and one level of tables (what Config holds)."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = [f"{key} = {_toml_value(value)}" for key, value in scalars.items() if value is not None]
    for name, table in tables.items():
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        flat = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        if not flat and not nested:
            continue
        lines += ["", f"[{name}]"] + [f"{key} = {_toml_value(value)}" for key, value in flat.items()]
        for sub, values in nested.items():
            lines += ["", f"[{name}.{sub}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
