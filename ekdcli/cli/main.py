"""The ``ekd`` click group: lazy subcommands, plugin commands, and one place for error handling."""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from ekdcli import __version__
from ekdcli.util.errors import EkdError

# Built-in commands, imported only when run (keeps `ekd --help` free of heavy imports).
BUILTIN = {
    "demo": "ekdcli.cli.commands.demo:demo",
    "train": "ekdcli.cli.commands.train:train",
    "import": "ekdcli.cli.commands.import_:import_",
    "score": "ekdcli.cli.commands.score:score",
    "partition": "ekdcli.cli.commands.partition:partition",
    "distill": "ekdcli.cli.commands.distill:distill",
    "evaluate": "ekdcli.cli.commands.evaluate:evaluate",
    "export": "ekdcli.cli.commands.export:export",
    "sweep": "ekdcli.cli.commands.sweep:sweep",
    "report": "ekdcli.cli.commands.report:report",
    "bench": "ekdcli.cli.commands.bench:bench",
    "bench-engine": "ekdcli.cli.commands.bench_engine:bench_engine",
    "plugins": "ekdcli.cli.commands.plugins:plugins",
    "list": "ekdcli.cli.commands.plugins:list_",
}

SHORT_HELP = {
    "demo": "Run the whole pipeline on the embedded data in a few minutes.",
    "train": "Train a model with cross-entropy (teachers, baselines).",
    "import": "Import an mdistiller/RepDistiller/torchvision checkpoint.",
    "score": "Score the training set with a teacher's energy.",
    "partition": "Split scored data into low/others/high energy sets.",
    "distill": "Distill a teacher into a student (KD, DKD, Energy KD, ...).",
    "evaluate": "Accuracy, calibration and energy-group accuracy of models.",
    "export": "A trained model as TorchScript, ONNX or torch.export file.",
    "sweep": "Run a campaign (configs x grid x seeds) locally or on Ray.",
    "report": "A campaign's table (mean ± std over seeds) beside the paper's.",
    "bench": "Time HE-DA per augmentation rate (the paper's Table 6).",
    "bench-engine": "Images/s of the engine's variants (precision, layout, cache).",
    "plugins": "Installed plugins and what each registers.",
    "list": "Registered models, datasets, distillers, temperature rules, augmentations, trackers.",
}


def _load(target: str) -> click.Command:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class EkdGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(BUILTIN) + sorted(self._plugin_commands())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BUILTIN:
            return _load(BUILTIN[name])
        plugin_commands = self._plugin_commands()
        if name in plugin_commands:
            command = plugin_commands[name].load()
            return command if isinstance(command, click.Command) else None
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP[name]) for name in BUILTIN]
        for name, component in sorted(self._plugin_commands().items()):
            rows.append((name, component.description or f"(from plugin {component.plugin})"))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    @staticmethod
    def _plugin_commands() -> dict[str, Any]:
        from ekdcli.sdk.plugins import get_plugins

        try:
            commands = get_plugins().registries["commands"]
        except EkdError:
            return {}
        return {c.name: c for c in commands.list("*") if c.name not in BUILTIN}


@click.group(cls=EkdGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ekd")
def cli() -> None:
    """ekd: energy-based knowledge distillation for image classifiers.

    \b
    Typical session (--data-root alone names CIFAR data; ./ekd.toml can hold these flags):
      ekd train --model wrn40_2 --data-root cifar100.npz
      ekd score --teacher wrn40_2 --data-root cifar100.npz
      ekd distill --teacher wrn40_2 --student wrn16_2 --data-root cifar100.npz --method energy_kd
      ekd evaluate ekd-store/runs/*

    Options come from built-in defaults < ./ekd.toml (or --config FILE) < flags.
    """


def lower_first(text: str) -> str:
    """A sentence's first letter in lower case (``Invalid value`` -> ``invalid value``; ``CIFAR`` stays)."""
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def _usage_message(exc: click.UsageError) -> str:
    """Click's message as one sentence, with the closest command for a typo and the help to read."""
    from ekdcli.util.errors import did_you_mean

    message = lower_first(exc.format_message().rstrip("."))
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "ekd"
    if message.startswith("no such command") and ctx is not None and isinstance(ctx.command, click.Group):
        unknown = message.removeprefix("no such command ").strip("'\"")
        hint = did_you_mean(unknown, ctx.command.list_commands(ctx))
        if hint:
            return f"{message}.{hint} (see '{path} --help')"
    return f"{message} (see '{path} --help')."


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one sentence and an exit code; tracebacks only with --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="ekd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:
        sys.exit(_report(exc, debug="--debug" in args))


def _report(exc: Exception, debug: bool) -> int:
    """Print ``exc`` as one line on stderr (its traceback too with --debug); the exit code."""
    if isinstance(exc, click.exceptions.Abort):
        click.echo("aborted.", err=True)
        return 130
    if isinstance(exc, click.UsageError):  # a bad flag or value: one line, with where to read about it
        click.echo(f"error: {_usage_message(exc)}", err=True)
        return exc.exit_code
    if isinstance(exc, click.ClickException):  # e.g. a file click could not open
        click.echo(f"error: {lower_first(exc.format_message())}", err=True)
        return exc.exit_code
    if debug:
        traceback.print_exc()
    if isinstance(exc, EkdError):
        click.echo(f"error: {lower_first(_one_line(exc.message))}", err=True)
        return exc.exit_code
    if isinstance(exc, OSError):  # the file system refused (no such folder, permissions, disk full, ...)
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(
            f"error: {lower_first(_one_line(str(exc.strerror or exc)))}{where}; check the path, its "
            "permissions and the free space (--debug shows where it happened).",
            err=True,
        )
        return 1
    # a bug or an environment problem: still one sentence unless --debug
    click.echo(
        f"error: unexpected {type(exc).__name__}: {_one_line(str(exc))} (run again with --debug for the "
        "traceback).",
        err=True,
    )
    return 1


def _one_line(text: str) -> str:
    """A message folded onto one line (library errors may span paragraphs)."""
    return " ".join(text.split())
