"""Options shared by the commands, with their documented names (docs/configuration.md), and their merge into a Config."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ekdcli.config import OPTION_TABLES, Config, dumps_toml, line_of, parse_assignments, resolve
from ekdcli.sdk.options import MAX_SEED
from ekdcli.util.errors import UsageError

# The named recipes' lengths and learning rates for --help (engine/recipe.py imports torch; a test
# keeps these texts equal to engine.recipe.RECIPES).
RECIPE_EPOCHS = "240 cifar, 360 cifar-energy, 100 imagenet, 30 quick"
RECIPE_LRS = "0.05 cifar, cifar-energy and quick (0.01 for MobileNetV2/ShuffleNet students), 0.2 imagenet"


class _Seed(click.IntRange):
    """A seed in [0, 2**63-1], shown as such instead of click's 19-digit ``[0<=x<=...]``."""

    def _describe_range(self) -> str:
        return "0<=x<2**63"


SEED = _Seed(0, MAX_SEED)

F = Callable[..., Any]


class FiniteFloat(click.ParamType):
    """A float that is not NaN or infinite: ``--lr inf`` is refused while the flags are read."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = FiniteFloat()

# name -> click option; each name is also a Config key unless listed in COMMAND_ONLY
_OPTIONS: dict[str, Callable[[F], F]] = {
    "config": lambda func: click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        help="TOML file (default: ./ekd.toml if present).",
    )(
        click.option(
            "--print-config",
            is_flag=True,
            default=None,
            help="Print the resolved configuration with the source of each value, and stop.",
        )(func)
    ),
    "store": click.option("--store", help="Store directory for weights, scores and runs (also EKD_HOME)."),
    "data": click.option(
        "--data", help="Dataset name (default: the embedded digits); see 'ekd list datasets'."
    ),
    "data_root": click.option("--data-root", help="Directory in torchvision's layout, or an .npz file."),
    "download": click.option(
        "--download/--no-download", default=None, help="Download the dataset where a network exists."
    ),
    "model": click.option("--model", help="Architecture name (see 'ekd list models')."),
    "teacher": click.option("--teacher", help="Teacher: a name in the store or a .safetensors path."),
    "student": click.option("--student", help="Student architecture (or weights to start from)."),
    "method": click.option(
        "--method", help="Distiller (see 'ekd list distillers'), e.g. kd, energy_dkd (default energy_kd)."
    ),
    "temperature_rule": click.option(
        "--temperature-rule",
        help="Where a temperature-based method's temperatures come from (see 'ekd list temperature-rules'): "
        "fixed, energy, gradation.",
    ),
    "augment": click.option("--augment", help="Augmentation (see 'ekd list augmentations'), e.g. he-cutmix."),
    "rate": click.option(
        "--rate",
        type=FINITE,
        help="The paper's r: an augmentation's rate (cutmix/mixup: a random r of each batch), else both temperature rates.",
    ),
    "low_rate": click.option(
        "--low-rate", type=FINITE, help="Fraction of lowest-energy samples (temperature rule)."
    ),
    "high_rate": click.option(
        "--high-rate", type=FINITE, help="Fraction of highest-energy samples (temperature rule)."
    ),
    "energy_temperature": click.option(
        "--energy-temperature", type=FINITE, help="T_E in E = -T_E * logsumexp(z / T_E) (default 4)."
    ),
    "recipe": click.option(
        "--recipe", help="Recipe preset: auto (by dataset), cifar, cifar-energy, imagenet, quick."
    ),
    "epochs": click.option(
        "--epochs",
        type=int,
        help=f"Number of epochs (default: the recipe's, {RECIPE_EPOCHS}); the recipe's lr milestones scale with it.",
    ),
    "batch_size": click.option("--batch-size", type=int, help="Global batch size (overrides the recipe)."),
    "lr": click.option("--lr", type=FINITE, help=f"Learning rate (default: the recipe's, {RECIPE_LRS})."),
    "seed": click.option("--seed", type=SEED, help="Random seed, 0 to 2**63-1 (default 0)."),
    "device": click.option("--device", help="auto (CUDA when present), cpu, cuda, cuda:1, ..."),
    "precision": click.option(
        "--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), help="Autocast precision."
    ),
    "channels_last": click.option("--channels-last/--no-channels-last", default=None, help="Memory format."),
    "compile": click.option("--compile/--no-compile", default=None, help="Use torch.compile."),
    "deterministic": click.option(
        "--deterministic/--no-deterministic", default=None, help="Deterministic algorithms (slower)."
    ),
    "teacher_cache": click.option(
        "--teacher-cache/--no-teacher-cache", default=None, help="Cache teacher logits per crop/flip view."
    ),
    "teacher_cache_dtype": click.option(
        "--teacher-cache-dtype",
        type=click.Choice(["auto", "float16", "float32"]),
        help="Storage of cached teacher logits (auto: float32 for fp32 teachers, exact).",
    ),
    "run_name": click.option("--run-name", help="Name of the run directory under <store>/runs/."),
    "track": click.option(
        "--track",
        metavar="NAME[,NAME]",
        callback=lambda ctx, param, value: _names(value),
        help="Experiment trackers beside the run directory, e.g. tensorboard,mlflow (see 'ekd list trackers').",
    ),
    "tracking_uri": click.option(
        "--tracking-uri", help="Tracking server of the trackers that use one (MLflow; default: in the store)."
    ),
    "limit_train": click.option("--limit-train", type=int, help="Use only the first N training samples."),
    "limit_test": click.option("--limit-test", type=int, help="Use only the first N test samples."),
    "json": click.option(
        "--json", "json", is_flag=True, default=None, help="Machine-readable result on stdout."
    ),
    "quiet": click.option("--quiet", "-q", is_flag=True, default=None, help="Print only the result."),
    "verbose": click.option(
        "--verbose", "-v", is_flag=True, default=None, help="Print every setting of the run, not a summary."
    ),
    "debug": click.option("--debug", is_flag=True, default=None, help="Show tracebacks on errors."),
    "set_values": click.option(
        "--set",
        "set_values",
        multiple=True,
        metavar="[TABLE.]KEY=VALUE",
        help="Any config key from the command line, repeatable: energy.t_low_energy=2, temperature.t=3, "
        "data_options.imbalance_factor=0.01, train.momentum=0.95, teacher_cache=true "
        f"(tables: {', '.join(OPTION_TABLES)}). Named flags win over --set.",
    ),
    "nproc": click.option(
        "--nproc",
        type=click.IntRange(min=1),
        help="Run as N data-parallel processes on this machine (via torchrun; ignored under torchrun).",
    ),
}


def _names(value: str | None) -> list[str] | None:
    """``a,b`` -> ``["a", "b"]`` (None when not given; ``--track ''`` tracks nothing)."""
    return None if value is None else [name.strip() for name in value.split(",") if name.strip()]


# Shared options that steer the command itself and are not Config keys.
COMMAND_ONLY = ("config", "nproc", "set_values")

COMMON = (
    "config",
    "store",
    "data",
    "data_root",
    "download",
    "device",
    "seed",
    "json",
    "quiet",
    "debug",
    "set_values",
)
RUNTIME = ("precision", "channels_last", "compile", "deterministic", "limit_train", "limit_test")
TRAINING = ("recipe", "epochs", "batch_size", "lr", "run_name", "track", "tracking_uri")


def options(*names: str) -> Callable[[F], F]:
    """Decorate a command with the shared options ``names`` (in the order given)."""

    def decorate(func: F) -> F:
        for name in reversed(names):
            func = _OPTIONS[name](func)
        return func

    return decorate


def build_config(
    params: dict[str, Any], tables: dict[str, dict[str, Any]] | None = None, resume: Path | None = None
) -> Config:
    """Resolve the Config from a command's click params (shared-option names only) and option tables.

    Resuming a run reads that run's resolved ``config.toml`` unless ``--config`` names another file.
    ``--set`` assignments come first; the named flags and option tables override them.
    """
    config_file = params.get("config_file")
    if resume is not None and not config_file and (resume / "config.toml").is_file():
        config_file = resume / "config.toml"
    assigned = parse_assignments(params.get("set_values") or ())  # --set: below the named flags
    flags: dict[str, Any] = {
        k: v for k, v in params.items() if k in _OPTIONS and k not in COMMAND_ONLY and v is not None
    }
    for table, values in (tables or {}).items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            flags[table] = given
    config = resolve(flags, config_file, assigned=assigned)
    check_file_values(config)
    if params.get("print_config"):
        click.echo(config_text(config))
        raise SystemExit(0)
    return config


def _named_checks() -> dict[str, Callable[[Any], object]]:
    """The names a config file may set that the registries check (torch-free)."""
    from ekdcli.sdk.plugins import registry

    return {
        "data": lambda v: registry("datasets").get(v),
        "method": lambda v: registry("distillers").get(v),
        "temperature_rule": lambda v: registry("temperature_rules").get(v),
        "augment": lambda v: registry("augmentations").get(v) if v != "none" else None,
    }


def check_file_values(config: Config) -> None:
    """Names set in a config file are checked now, and a bad one names the file and line (a flag's
    own message names the flag)."""
    for key, check in _named_checks().items():
        source = config.sources.get(key, "default")
        value = getattr(config, key)
        if source in ("default", "flag") or source.startswith("recognized") or value is None:
            continue
        try:
            check(value)
        except UsageError as exc:
            number = line_of(source, key)
            where = f"{source} line {number}" if number else source
            raise UsageError(f"{exc.message.rstrip('.')} (set in {where}).") from exc


def config_text(config: Config) -> str:
    """``--print-config``: every key as TOML with its source (``default``, a file, ``flag``, ...);
    keys without a value are listed as comments, so the output reads back as a project file."""
    lines = ["# the resolved configuration; after each value, where it came from"]
    tables: list[str] = []
    for key, value in config.as_dict().items():
        if key in OPTION_TABLES:
            tables.append(key)
        elif value is None:
            lines.append(f"# {key} (not set; {config.sources.get(key, 'default')})")
        else:
            lines.append(f"{dumps_toml({key: value}).strip()}  # {config.sources.get(key, 'default')}")
    for table in tables:
        lines.append(f"[{table}]")
        for sub, value in (getattr(config, table) or {}).items():
            origin = config.sources.get(f"{table}.{sub}", config.sources.get(table, "default"))
            lines.append(f"{dumps_toml({sub: value}).strip()}  # {origin}")
    return "\n".join(lines)
