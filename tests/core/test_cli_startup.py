"""The CLI starts without torch, and errors are one sentence with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ekdcli", *args], capture_output=True, text=True, timeout=120
    )


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import sys, json\n"
        "from ekdcli.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_help_and_list_do_not_import_torch() -> None:
    for argv in (["--help"], ["list", "models"], ["plugins"], ["distill", "--help"]):
        loaded = _modules_after(argv)
        assert "torch" not in loaded, f"'ekd {' '.join(argv)}' imported torch"
        assert "ekdcli.cli.main" in loaded  # the probe really ran the CLI


def test_unknown_kind_is_a_usage_error_with_suggestion() -> None:
    result = _run("list", "modles")
    assert result.returncode == 2
    assert "Did you mean 'models'" in result.stderr
    assert "Traceback" not in result.stderr
    debug = _run("list", "modles", "--debug")  # the same sentence, after the traceback
    assert debug.returncode == 2
    assert debug.stderr.startswith("Traceback") and "ekdcli.util.errors.UsageError" in debug.stderr
    assert debug.stderr.splitlines()[-1] == result.stderr.strip()


def test_every_command_has_help_with_an_example() -> None:
    from ekdcli.cli.main import BUILTIN

    for name in BUILTIN:
        result = _run(name, "--help")
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout, name


def test_list_of_one_component_shows_its_options_and_defaults() -> None:
    result = _run("list", "augmentations", "he-da")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("he-cutmix ")
    assert "--set augmentation.KEY=VALUE" in lines[1]
    options = {line.split()[0]: line.split()[1:] for line in lines[2:]}  # name, default, then its help
    assert options["rate"][0] == "0.2" and options["alpha"][0] == "1.0" and options["mode"][0] == "extra"
    assert " ".join(options["rate"][1:]) == "the share of samples mixed, in (0, 1]"
    result = _run("list", "distillers", "energy_kd")
    assert (
        "[energy]" in result.stdout
        and "t_low_energy" in result.stdout
        and "decided by the preset" in result.stdout
    )
    result = _run("list", "datasets", "cifar100-lt")
    assert "--set data_options.KEY=VALUE" in result.stdout and "imbalance_factor  0.01" in result.stdout
    result = _run("list", "distillers")  # several matches: no options
    assert "options, with defaults" not in result.stdout


def test_a_file_system_refusal_is_one_sentence_naming_the_path(tmp_path, ekd) -> None:
    (tmp_path / "blocker").write_text("a file where the store's folder should be")
    args = ("train", "--store", "blocker/store", "--model", "resnet8", "--epochs", "1", "--limit-train", "16")
    code, out, err = ekd(*args, "--limit-test", "8", "--quiet")
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith("error: not a directory (blocker/store/") and "Traceback" not in err
    assert line.endswith(
        "; check the path, its permissions and the free space (--debug shows where it happened)."
    )
    code, _, err = ekd(*args, "--limit-test", "8", "--quiet", "--debug")
    assert code == 1 and "Traceback" in err and "NotADirectoryError" in err


def test_click_usage_errors_are_one_line_naming_the_help(ekd) -> None:
    for args, expected in (
        (
            ("distill", "--preset", "nope"),
            "error: invalid value for '--preset': 'nope' is not one of 'paper', 'official' (see 'ekd distill --help').\n",
        ),
        (
            ("train", "--epochs", "abc"),
            "error: invalid value for '--epochs': 'abc' is not a valid integer (see 'ekd train --help').\n",
        ),
        (("trian",), "error: no such command 'trian'. Did you mean 'train'? (see 'ekd --help')\n"),
        (("blah",), "error: no such command 'blah' (see 'ekd --help').\n"),
        (("list",), "error: missing argument 'KIND' (see 'ekd list --help').\n"),
    ):
        code, out, err = ekd(*args)
        assert (code, out, err) == (2, "", expected), args


def test_mistyped_names_are_reported_before_torch_is_imported(tmp_path) -> None:
    """A typo costs the CLI's start-up, not torch's (seconds): names are checked first."""
    import os

    os.chdir(tmp_path)
    for argv, message in (
        (["distill", "--method", "kdd"], "unknown method 'kdd'"),
        (["distill", "--method", "kd", "--augment", "he-cutmixx"], "unknown augmentation 'he-cutmixx'"),
        (["distill", "--teacher", "resnet8", "--student", "resnet88"], "unknown model 'resnet88'"),
        (["distill", "--data", "cifar1000", "--teacher", "a", "--student", "resnet8"], "unknown dataset"),
        (["train", "--model", "resnet88"], "unknown model 'resnet88'"),
        (["train", "--model", "resnet8", "--data", "cifar1000"], "unknown dataset 'cifar1000'"),
        (["score", "--teacher", "resnet8", "--data", "cifar1000"], "unknown dataset 'cifar1000'"),
        (["score", "--teacher", "nothere", "--data", "fake"], "no trained teacher 'nothere'"),
        (["evaluate", "nothere"], "no target 'nothere'"),
    ):
        code = (
            "import sys\n"
            "from ekdcli.cli.main import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    print('exit', exc.code)\n"
            "print('torch' in sys.modules)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.stdout.split() == ["exit", "2", "False"], (argv, result.stdout, result.stderr)
        assert message in result.stderr, (argv, result.stderr)


def test_every_error_message_starts_lower_case() -> None:
    """`error: ...` is one sentence starting lower-case: the first literal text of every error raised."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    errors = {"UsageError", "JobError", "PluginError", "EkdError", "ConfigError"}
    found = []
    for path in [
        *root.glob("ekdcli/**/*.py"),
        *root.glob("plugins/**/*.py"),
        *root.glob("examples/plugins/*/src/**/*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in errors
            ):
                continue
            if not node.args:
                continue
            first = node.args[0]
            if isinstance(first, ast.JoinedStr):
                first = first.values[0] if first.values else first
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                text = first.value
                if len(text) > 1 and text[0].isupper() and not text[1].isupper():
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {text[:40]}")
    assert not found, "error messages starting upper-case:\n" + "\n".join(found)
