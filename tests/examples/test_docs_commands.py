"""Every ``ekd`` command of README.md, docs/*.md and examples/README.md, as written.

Each is read from the documents themselves (fenced shell blocks, and inline code spans that start
with ``ekd``).  The fast test parses every one with its command's own options (an unknown flag, a
value of the wrong type or a misspelt choice fails); the slow ones run the commands that once
failed as written (the sweep grid and the ``--set`` examples) on tiny data.  The README's CIFAR-100
block runs in test_readme_cifar.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
# What the documents leave to the reader: placeholders and shell variables, filled in as a reader would.
FILLED = {"<run>": "my-run", "$seed": "0", "$cfg": "examples/paper/table2/kd-vgg13-vgg8.toml"}
FILLED_RE = re.compile(r"\$\(basename \$cfg \.toml\)")


def _shell_lines(block: str) -> list[str]:
    """The ``ekd`` lines of a shell block: continuations joined, comments dropped, variables filled."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("ekd "):
            line = FILLED_RE.sub("kd-vgg13-vgg8", line)
            for placeholder, value in FILLED.items():
                line = line.replace(placeholder, value)
            out.append(line)
    return out


def documented_commands(inline: bool = False) -> list[tuple[str, str]]:
    """``(where, command line)`` of every ekd command in the documents' shell blocks; ``inline``: the
    code spans of their prose instead (often fragments: ``ekd score ... --force``)."""
    found: list[tuple[str, str]] = []
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        name = doc.relative_to(ROOT).as_posix()
        if not inline:
            for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.S):
                found += [(name, line) for line in _shell_lines(block)]
            continue
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        found += [(name, span) for span in re.findall(r"`(ekd [^`]+)`", prose) if " --" in span]
    return found


def _command(args: list[str]) -> tuple[click.Command, str, list[str]]:
    """The click command an ``ekd`` line runs, its name, and its arguments."""
    from ekdcli.cli.main import cli

    if not args or args[0].startswith("-"):
        return cli, "ekd", args
    command = cli.get_command(click.Context(cli), args[0])
    assert command is not None, f"no command {args[0]!r}"
    return command, args[0], args[1:]


def test_the_documents_have_the_commands_a_reader_follows() -> None:
    commands = [line for _, line in documented_commands()]
    assert len(commands) >= 25
    assert any(line.startswith("ekd sweep cfg.toml --grid") for line in commands)
    spans = [line for _, line in documented_commands(inline=True)]
    assert any("data_options.imbalance_factor=0.01" in line for line in spans)


@pytest.mark.parametrize(("where", "line"), documented_commands())
def test_every_documented_command_parses_with_its_options(where: str, line: str) -> None:
    command, name, args = _command(shlex.split(line)[1:])
    try:
        command.make_context(name, list(args))
    except click.exceptions.Exit:  # --help
        pass
    except click.BadParameter as exc:
        if "does not exist" not in exc.format_message():  # a file the reader brings (a checkpoint)
            pytest.fail(f"{where}: {line!r} does not parse: {exc.format_message()}")
    except click.UsageError as exc:  # an unknown flag, a bad value or choice, a missing argument
        pytest.fail(f"{where}: {line!r} does not parse: {exc.format_message()}")


@pytest.mark.parametrize(("where", "span"), documented_commands(inline=True))
def test_every_flag_named_in_the_prose_exists(where: str, span: str) -> None:
    command, _, args = _command(shlex.split(span)[1:])
    known = {"--help"} | {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    flags = [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]
    assert [flag for flag in flags if flag not in known] == [], f"{where}: {span!r}"


def _project(tmp_path: Path, data: Path) -> None:
    (tmp_path / "ekd.toml").write_text(
        f'data_root = "{data}"\nlimit_train = 64\nlimit_test = 32\n[train]\nepochs = 1\nbatch_size = 16\n'
    )


@pytest.mark.slow
def test_the_readme_sweep_grid_runs_as_written(tmp_path: Path, ekd: Any) -> None:
    line = next(line for _, line in documented_commands() if line.startswith("ekd sweep cfg.toml --grid"))
    (tmp_path / "cfg.toml").write_text(
        'data = "fake"\nteacher = "tiny_cnn"\nstudent = "tiny_cnn"\nlimit_train = 64\nlimit_test = 32\n'
        "[data_options]\nn_train = 64\nn_test = 32\n[train]\nepochs = 1\nbatch_size = 16\n"
    )
    code, out, err = ekd(*shlex.split(line)[1:], "--dry-run")
    assert code == 0, err
    assert out.count("energy_kd") >= 2 and out.count("energy_dkd") >= 2  # 2 methods x 2 rates x 2 seeds


@pytest.mark.slow
def test_the_readme_set_example_runs_as_written(tmp_path: Path, shared_data: Path, ekd: Any) -> None:
    line = next(
        line for _, line in documented_commands(inline=True) if "data_options.imbalance_factor=0.01" in line
    )
    _project(tmp_path, shared_data / "cifar100.npz")  # the tiny file has too few images per class
    code, out, err = ekd(*shlex.split(line)[1:])
    assert code == 0, err
    assert "ekd train: resnet8 on cifar100-lt-imbalance_factor0.01 (" in out
    assert "500 down to 5 per class (profile exp, imbalance factor 0.01" in out
