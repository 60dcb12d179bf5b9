"""Hostile and careless input, table by table: each is refused before any work, in one sentence
that names the cause, with the right exit code, and leaves every file byte-identical.

A case is ``(id, setup, args, exit code, fragments of the message)``.  ``setup`` prepares files
in the test's directory first (``None``: nothing); ``{store}`` and ``{pid}`` in the arguments and
fragments stand for the store and this process.  All run in-process on the prepared store
(conftest.py): a tiny teacher on the ``fake`` data, its score file and the finished run ``done``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rel_helpers import DATA, RUN, SCORES, TEACHER
from safetensors.torch import save_file

from ekdcli.store.locks import FileLock, lock_for
from ekdcli.store.weights import load_tensors

Setup = Callable[[Path, Path], None]  # (workspace, store)
TRAIN = ("train", "--model", "tiny_cnn", *DATA, "--epochs", "1", "--limit-train", "32", "--quiet")
DISTILL = ("distill", "--teacher", "tiny_cnn", "--student", "tiny_cnn", *DATA, "--epochs", "1", "--quiet")
SCORE = ("score", "--teacher", "tiny_cnn", *DATA, "--quiet")
PARTITION = ("partition", "--teacher", "tiny_cnn", *DATA, "--no-figures", "--quiet")
IMPORT = ("import", "model.pth", "--model", "tiny_cnn", *DATA, "--quiet")


# ----------------------------------------------------------------------------------- set-ups
def text_file(name: str, text: str | bytes) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        target = ws / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)

    return setup


def empty_dir(name: str) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        (ws / name).mkdir(parents=True)

    return setup


class Evil:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > PWNED",))


def torch_file(name: str, payload: Callable[[], Any]) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        target = ws / name
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload(), target)

    return setup


def run_copy(name: str, checkpoint: Callable[[Path], None] | None = None) -> Setup:
    """``runs/<name>`` in the store: a copy of the finished run, its checkpoint rewritten by ``checkpoint``."""

    def setup(ws: Path, store: Path) -> None:
        import shutil

        target = store / "runs" / name
        shutil.copytree(store / RUN, target)
        if checkpoint is not None:
            checkpoint(target / "checkpoint.pt")

    return setup


def as_distill_run(checkpoint: Callable[[Path], None]) -> Callable[[Path], None]:
    """The run's config.toml as a distillation of tiny_cnn by tiny_cnn would record it, then ``checkpoint``."""

    def rewrite(path: Path) -> None:
        config = path.parent / "config.toml"
        config.write_text('teacher = "tiny_cnn"\nstudent = "tiny_cnn"\n' + config.read_text())
        checkpoint(path)

    return rewrite


def without_summary(path: Path) -> None:
    (path.parent / "summary.json").unlink()


def rewrite_checkpoint(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def rewrite(path: Path) -> None:
        payload = torch.load(path, weights_only=True)
        torch.save(change(payload), path)

    return rewrite


def teacher_variant(
    name: str,
    meta: dict[str, str] | None = None,
    tensors: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> Setup:
    """A copy of the prepared teacher at ``name`` with changed metadata or tensors (written raw)."""

    def setup(ws: Path, store: Path) -> None:
        weights, metadata = load_tensors(store / TEACHER)
        metadata.update(meta or {})
        for key in [k for k, v in metadata.items() if v is None]:
            del metadata[key]
        save_file(tensors(weights) if tensors else weights, str(ws / name), metadata=metadata)

    return setup


def scaled(factor: float) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    return lambda w: {k: v * factor if v.is_floating_point() else v for k, v in w.items()}


def score_variant(change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> Setup:
    """The store's score file with changed tensors (written raw, as an older or broken writer would)."""

    def setup(ws: Path, store: Path) -> None:
        path = store / SCORES
        tensors, metadata = load_tensors(path)
        save_file(change(tensors), str(path), metadata=metadata)

    return setup


def nan_energies(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    energies = t["energies"].clone()
    energies[::7] = float("nan")
    return {**t, "energies": energies}


def state_dict_file(name: str, change: Callable[[dict[str, torch.Tensor]], Any]) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        weights, _ = load_tensors(store / TEACHER)
        torch.save(change(weights), ws / name)

    return setup


def npz(name: str, **arrays: Any) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        np.savez(ws / name, **arrays)

    return setup


def images(shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def labels(n: int) -> np.ndarray:
    return np.arange(n) % 10


def held(path: str) -> Setup:
    """A lock this test process holds on ``store/<path>`` (as a live writer would)."""

    def setup(ws: Path, store: Path) -> None:
        lock = FileLock(lock_for(store / path), "test").acquire()
        HELD.append(lock)

    return setup


HELD: list[FileLock] = []


# ----------------------------------------------------------------------------------- the table
NON_FINITE = ["inf", "-inf", "nan", "NaN", "1e999", "-1e999", "Infinity"]
Case = tuple[str, Setup | None, tuple[str, ...], int, tuple[str, ...]]


def _numbers() -> list[Case]:
    """Non-finite numbers are refused while the flags are read (click), on every command."""
    cases: list[Case] = []
    for value in NON_FINITE:
        cases.append(
            (f"train-lr-{value}", None, (*TRAIN, "--lr", value), 2, ("'--lr'", "not a finite number"))
        )
    for flag in ("--rate", "--low-rate", "--high-rate", "--energy-temperature", "--lr"):
        for value in ("inf", "nan"):
            cases.append(
                (
                    f"distill{flag}-{value}",
                    None,
                    (*DISTILL, flag, value),
                    2,
                    (f"'{flag}'", "not a finite number"),
                )
            )
    for command, base in (("score", SCORE), ("partition", PARTITION)):
        for value in ("inf", "nan"):
            cases.append(
                (
                    f"{command}-rate-{value}",
                    None,
                    (*base, "--rate", value),
                    2,
                    ("'--rate'", "not a finite number"),
                )
            )
    cases.append(("evaluate-rate-nan", None, ("evaluate", RUN, "--rate", "nan"), 2, ("not a finite number",)))
    cases.append(("train-lr-word", None, (*TRAIN, "--lr", "fast"), 2, ("'--lr'", "'fast' is not a number")))
    return cases


def _seeds() -> list[Case]:
    """Seeds: 0 to 2**63-1 (docs/configuration.md), checked at parsing, in files and in --set."""
    cases: list[Case] = []
    for value in (str(2**70), str(2**63), "-1", "1.5", "abc", "1e3"):
        for command, base in (("train", TRAIN), ("distill", DISTILL), ("score", SCORE)):
            cases.append((f"{command}-seed-{value[:8]}", None, (*base, "--seed", value), 2, ("'--seed'",)))
    cases += [
        (
            "set-seed-negative",
            None,
            (*TRAIN, "--set", "seed=-1"),
            2,
            ("--set", "'seed' must be from 0 to 2**63-1"),
        ),
        ("set-seed-float", None, (*TRAIN, "--set", "seed=1e30"), 2, ("--set", "'seed' must be an integer")),
        (
            "set-seed-huge",
            None,
            (*TRAIN, "--set", f"seed={2**64}"),
            2,
            ("'seed' must be an integer of at most 2**63-1 in size",),
        ),
        (
            "file-seed-negative",
            text_file("c.toml", "seed = -5\n"),
            (*TRAIN, "--config", "c.toml"),
            2,
            ("c.toml", "(line 1)"),
        ),
        (
            "data-options-seed",
            None,
            (*TRAIN, "--set", "data_options.seed=-3"),
            2,
            ("option 'seed' of dataset 'fake' must be at least 0",),
        ),
        (
            "data-options-seed-huge",
            None,
            (*TRAIN, "--set", f"data_options.seed={2**63}"),
            2,
            ("option 'seed' of dataset 'fake' must be at most",),
        ),
    ]
    return cases


def _set_values() -> list[Case]:
    """``--set``: each value checked where it came from, the key named."""
    bad = [
        ("lr=inf", "'lr' must be a number that is finite"),
        ("lr=nan", "'lr' must be a number that is finite"),
        ("energy_temperature=-inf", "'energy_temperature' must be a number that is finite"),
        ("rate=nan", "'rate' must be a number that is finite"),
        ("epochs=1.5", "'epochs' must be an integer"),
        ('epochs="1"', "'epochs' must be an integer, not '1'"),
        ("batch_size=big", "'batch_size' must be an integer"),
        ("limit_train=1e3", "'limit_train' must be an integer"),
        ("quiet=maybe", "'quiet' must be true or false"),
        ("train.lr=fast", "'train.lr' must be a number, not 'fast'"),
        ("train.lr=inf", "'train.lr' must be a number that is finite"),
        ("train.milestones=5", "'train.milestones' must be a list of integers, not 5"),
        ('train.milestones=["a"]', "'train.milestones' must be a list of integers"),
        ('train.epochs="1"', "'train.epochs' must be an integer, not '1'"),
        ("train.epochs=true", "'train.epochs' must be an integer"),
        ("train.nesterov=maybe", "'train.nesterov' must be true or false"),
        ("train.schedule=5", "'train.schedule' must be a string"),
        ("train.grad_clip=nan", "'train.grad_clip' must be a number"),
        ("train.epoch=3", "unknown key 'train.epoch' (did you mean 'epochs'?"),
        ("nonsense=1", "unknown key 'nonsense'"),
        ("energy=3", "'energy' must be a table"),
    ]
    cases: list[Case] = [
        (f"set-{assignment}", None, (*TRAIN, "--set", assignment), 2, ("--set:", message))
        for assignment, message in bad
    ]
    cases += [
        ("set-not-a-table", None, (*TRAIN, "--set", "foo.bar=1"), 2, ("'foo' is not an option table",)),
        ("set-no-equals", None, (*TRAIN, "--set", "novalue"), 2, ("--set wants KEY=VALUE",)),
        ("set-empty-key", None, (*TRAIN, "--set", "=3"), 2, ("--set wants KEY=VALUE",)),
        ("set-three-parts", None, (*TRAIN, "--set", "a.b.c=1"), 2, ("--set wants KEY=VALUE",)),
        (
            "set-energy-segments",
            None,
            (*DISTILL, "--set", "energy.segments=1000000"),
            2,
            ("option 'segments' of temperature rule 'energy' must be at most 100",),
        ),
    ]
    return cases


def _config_files() -> list[Case]:
    """Config files: one sentence naming the file, the key and its line."""
    junk = bytes(range(256)) * 2
    files = [
        ("binary", junk, ("config file c.toml is not valid TOML", "not UTF-8")),
        ("utf16", "lr = 0.1\n".encode("utf-16"), ("config file c.toml is not valid TOML",)),
        ("no-value", "data = \n", ("is not valid TOML", "line 1")),
        ("unclosed-table", "[train\nlr = 1\n", ("is not valid TOML",)),
        ("duplicate", "lr = 1\nlr = 2\n", ("is not valid TOML",)),
        ("lr-word", 'lr = "fast"\n', ("c.toml:", "'lr' must be a number, not 'fast' (line 1)")),
        ("lr-inf", "\n\nlr = inf\n", ("'lr' must be a number that is finite", "(line 3)")),
        ("lr-nan", "lr = nan\n", ("'lr' must be a number that is finite",)),
        (
            "train-lr-word",
            '# comment\n[train]\nlr = "fast"\n',
            ("'train.lr' must be a number, not 'fast' (line 3)",),
        ),
        ("train-lr-inf", "[train]\nmomentum = 0.9\nlr = -inf\n", ("'train.lr'", "(line 3)")),
        (
            "train-milestones",
            "[train]\nmilestones = 5\n",
            ("'train.milestones' must be a list of integers", "(line 2)"),
        ),
        (
            "train-epochs-string",
            '[train]\nepochs = "1"\n',
            ("'train.epochs' must be an integer, not '1' (line 2)",),
        ),
        (
            "train-unknown",
            "[train]\nepoch = 3\n",
            ("unknown key 'train.epoch' (line 2; did you mean 'epochs'?",),
        ),
        ("train-dotted", 'train.lr = "x"\n', ("'train.lr' must be a number", "(line 1)")),
        ("top-unknown", "data = 'fake'\nepoch = 3\n", ("unknown key 'epoch' (line 2)",)),
        ("table-type", "energy = 3\n", ("'energy' must be a table, not 3 (line 1)",)),
        (
            "epochs-huge",
            f"epochs = {2**63 - 1}\nbatch_size = -{2**63}\n",
            ("'batch_size' must be an integer of at most",),
        ),
        ("quiet-int", "quiet = 1\n", ("'quiet' must be true or false",)),
        ("seed-string", 'seed = "0"\n', ("'seed' must be an integer, not '0' (line 1)",)),
        (
            "energy-inf",
            "[energy]\nt_mid = inf\n",
            ("option 't_mid' of temperature rule 'energy' must be a finite number", "(set in c.toml line 2)"),
        ),
        (
            "segments-huge",
            "[energy]\n\nsegments = 1000000\n",
            ("must be at most 100", "(set in c.toml line 3)"),
        ),
    ]
    cases: list[Case] = []
    for name, text, fragments in files:
        command = DISTILL if name in ("energy-inf", "segments-huge") else TRAIN
        cases.append(
            (f"config-{name}", text_file("c.toml", text), (*command, "--config", "c.toml"), 2, fragments)
        )
    cases += [
        (
            "config-missing",
            None,
            (*TRAIN, "--config", "nope.toml"),
            2,
            ("config file nope.toml does not exist",),
        ),
        (
            "config-directory",
            empty_dir("d.toml"),
            (*TRAIN, "--config", "d.toml"),
            2,
            ("'--config'", "directory"),
        ),
        (
            "ekd-toml-binary",
            text_file("ekd.toml", junk),
            TRAIN,
            2,
            ("config file ekd.toml is not valid TOML",),
        ),
    ]
    return cases


def _names() -> list[Case]:
    """Names that cannot be a file in the store are refused before anything is loaded."""
    cases: list[Case] = []
    for name in ("../..", "..", "/", "...", "_._"):
        cases.append(
            (f"train-name-{name}", None, (*TRAIN, "--name", name), 2, (f"--name {name!r} cannot be used",))
        )
        cases.append(
            (
                f"train-run-name-{name}",
                None,
                (*TRAIN, "--run-name", name),
                2,
                (f"--run-name {name!r} cannot be used",),
            )
        )
    cases += [
        (
            "distill-run-name-dots",
            None,
            (*DISTILL, "--run-name", ".."),
            2,
            ("--run-name '..' cannot be used",),
        ),
        (
            "import-name-dots",
            state_dict_file("model.pth", dict),
            (*IMPORT, "--name", "../.."),
            2,
            ("--name '../..'",),
        ),
        ("train-run-name-finished", None, (*TRAIN, "--run-name", "done"), 2, ("run 'done' already exists",)),
        (
            "distill-run-name-finished",
            None,
            (*DISTILL, "--run-name", "done"),
            2,
            ("already exists", "--resume"),
        ),
        (
            "train-run-name-holds-a-run",
            run_copy("half", without_summary),
            (*TRAIN, "--run-name", "half"),
            2,
            ("already holds a run; resume it with --resume",),
        ),
    ]
    return cases


def _resume_targets() -> list[Case]:
    """``--resume``: the target is checked before any teacher, data or model is touched."""
    nothing = ("holds no checkpoint.pt, so there is nothing to resume",)
    unreadable = ("is not a readable PyTorch checkpoint", "start a new run instead of resuming this one")
    resume = ("--resume", "{store}/runs/bad")
    return [
        ("train-resume-missing", None, (*TRAIN, "--resume", "nowhere"), 2, ("'--resume'", "does not exist")),
        (
            "train-resume-file",
            text_file("f.txt", "x"),
            (*TRAIN, "--resume", "f.txt"),
            2,
            ("'--resume'", "is a file"),
        ),
        ("train-resume-empty", empty_dir("empty"), (*TRAIN, "--resume", "empty"), 2, nothing),
        ("distill-resume-empty", empty_dir("empty"), ("distill", "--resume", "empty"), 2, nothing),
        (
            "distill-resume-empty-quiet",
            empty_dir("e2"),
            ("distill", "--resume", "e2", "--method", "kd"),
            2,
            nothing,
        ),
        (
            "distill-resume-config-only",
            text_file("r/config.toml", 'data = "fake"\n'),
            ("distill", "--resume", "r"),
            2,
            nothing,
        ),
        (
            "train-resume-zero-byte",
            run_copy("bad", lambda p: p.write_bytes(b"")),
            (*TRAIN, *resume),
            2,
            ("the file is empty",),
        ),
        (
            "train-resume-truncated",
            run_copy("bad", lambda p: p.write_bytes(p.read_bytes()[:300])),
            (*TRAIN, *resume),
            2,
            unreadable,
        ),
        (
            "train-resume-text",
            run_copy("bad", lambda p: p.write_text("not a checkpoint")),
            (*TRAIN, *resume),
            2,
            unreadable,
        ),
        (
            "train-resume-malicious",
            run_copy("bad", lambda p: torch.save({"format": 1, "x": Evil()}, p)),
            (*TRAIN, *resume),
            2,
            ("contains a pickled Python object (posix.system)", "refuses to unpickle", "start a new run"),
        ),
        (
            "distill-resume-malicious",
            run_copy("bad", as_distill_run(lambda p: torch.save({"format": 1, "x": Evil()}, p))),
            ("distill", *resume, "--teacher", "tiny_cnn", "--student", "tiny_cnn", "--quiet"),
            2,
            ("contains a pickled Python object (posix.system)",),
        ),
        (
            "train-resume-other-version",
            run_copy("bad", rewrite_checkpoint(lambda c: {**c, "format": 99})),
            (*TRAIN, *resume),
            2,
            ("was written by another version of ekd",),
        ),
        (
            "train-resume-foreign-dict",
            run_copy("bad", lambda p: torch.save({"weights": torch.zeros(2)}, p)),
            (*TRAIN, *resume),
            2,
            ("another version of ekd",),
        ),
        (
            "train-resume-missing-keys",
            run_copy("bad", rewrite_checkpoint(lambda c: {k: v for k, v in c.items() if k != "optimizer"})),
            (*TRAIN, *resume),
            2,
            ("is damaged (it lacks optimizer)",),
        ),
        (
            "train-resume-changed-recipe",
            run_copy("bad"),
            (*TRAIN, *resume, "--lr", "0.5"),
            2,
            ("cannot change --lr (unset -> 0.5)",),
        ),
    ]


def _store_files() -> list[Case]:
    """Weights and score files that are damaged, foreign or non-finite: named, never trusted."""
    teacher = ("--teacher", "t.safetensors")
    score = ("score", *DATA, *teacher, "--quiet")
    distill = ("distill", *teacher, "--student", "tiny_cnn", *DATA, "--epochs", "1", "--quiet")
    variants = [
        ("classes-abc", {"num_classes": '"abc"'}, None, ("t.safetensors records num_classes = 'abc'",)),
        ("classes-negative", {"num_classes": "-3"}, None, ("records num_classes = -3",)),
        ("classes-float", {"num_classes": "2.5"}, None, ("records num_classes = 2.5",)),
        ("channels-word", {"in_channels": "x"}, None, ("records in_channels = 'x'",)),
        ("arch-unknown", {"arch": "nope_net"}, None, ("records the architecture 'nope_net'",)),
        ("classes-other", {"num_classes": "3"}, None, ("predicts 3 classes but data 'fake' has 10",)),
        ("nan", None, scaled(float("nan")), ("t.safetensors holds NaN or infinite weights",)),
        ("inf", None, scaled(float("inf")), ("holds NaN or infinite weights",)),
        (
            "misshaped",
            None,
            lambda w: {**w, "fc.weight": torch.zeros(3, 3)},
            ("the checkpoint does not fit tiny_cnn (the teacher file t.safetensors)", "mis-shaped keys"),
        ),
        (
            "missing-keys",
            None,
            lambda w: {k: v for k, v in w.items() if not k.startswith("bn1")},
            ("(the teacher file t.safetensors)", "missing keys"),
        ),
    ]
    cases: list[Case] = []
    for name, meta, tensors, fragments in variants:
        setup = teacher_variant("t.safetensors", meta, tensors)
        cases.append((f"score-teacher-{name}", setup, score, 2, fragments))
        cases.append((f"distill-teacher-{name}", setup, distill, 2, fragments))
    cases += [
        (
            "score-teacher-zero-byte",
            text_file("t.safetensors", b""),
            score,
            2,
            ("t.safetensors is not a readable safetensors file",),
        ),
        (
            "score-teacher-text",
            text_file("t.safetensors", "hello"),
            score,
            2,
            ("is not a readable safetensors file",),
        ),
        ("score-teacher-missing", None, score, 2, ("the teacher weights file t.safetensors does not exist",)),
        (
            "distill-teacher-not-trained",
            None,
            (*DISTILL[:1], "--teacher", "resnet8", *DISTILL[3:]),
            2,
            ("no trained teacher 'resnet8'",),
        ),
        (
            "partition-nan-scores",
            score_variant(nan_energies),
            (*PARTITION, "--rate", "0.2"),
            2,
            ("non-finite energies", "--force"),
        ),
        ("score-nan-scores", score_variant(nan_energies), SCORE, 2, ("non-finite energies", "--force")),
        ("distill-nan-scores", score_variant(nan_energies), DISTILL, 2, ("non-finite energies",)),
        (
            "partition-short-scores",
            score_variant(lambda t: {**t, "labels": t["labels"][:5]}),
            (*PARTITION, "--rate", "0.2"),
            2,
            ("damaged score file",),
        ),
        (
            "partition-zero-byte-scores",
            text_file("s.safetensors", b""),
            (*PARTITION, "--scores", "s.safetensors", "--rate", "0.2"),
            2,
            ("not an ekd score file",),
        ),
        (
            "partition-weights-as-scores",
            None,
            (*PARTITION, "--scores", "{store}/" + TEACHER, "--rate", "0.2"),
            2,
            ("is not an ekd score file",),
        ),
        ("evaluate-missing-run", None, ("evaluate", "{store}/runs/nothing"), 2, ("nothing",)),
    ]
    return cases


def _imports() -> list[Case]:
    """``ekd import``: no unpickling, no non-finite weights, the file named."""
    return [
        (
            "import-malicious",
            torch_file("model.pth", lambda: {"model": Evil()}),
            IMPORT,
            2,
            ("model.pth contains a pickled Python object (posix.system)", "refuses to unpickle"),
        ),
        ("import-zero-byte", text_file("model.pth", b""), IMPORT, 2, ("the file is empty",)),
        (
            "import-text",
            text_file("model.pth", "hello"),
            IMPORT,
            2,
            ("is not a readable PyTorch checkpoint",),
        ),
        (
            "import-nan",
            state_dict_file("model.pth", scaled(float("nan"))),
            IMPORT,
            2,
            ("holds NaN or infinite weights",),
        ),
        (
            "import-inf",
            state_dict_file("model.pth", scaled(float("-inf"))),
            IMPORT,
            2,
            ("holds NaN or infinite weights",),
        ),
        (
            "import-no-state-dict",
            torch_file("model.pth", lambda: [1, 2, 3]),
            IMPORT,
            2,
            ("holds no state dict",),
        ),
        (
            "import-too-deep",
            state_dict_file("model.pth", lambda w: {"a": {"b": {"c": {"d": {"e": w}}}}}),
            IMPORT,
            2,
            ("holds no state dict",),
        ),
        (
            "import-wrong-prefix",
            state_dict_file("model.pth", dict),
            (*IMPORT, "--prefix", "student."),
            2,
            ("has no keys starting with 'student.'",),
        ),
        (
            "import-wrong-classes",
            state_dict_file("model.pth", dict),
            (*IMPORT, "--num-classes", "7"),
            2,
            ("does not fit tiny_cnn", "mis-shaped keys"),
        ),
    ]


def _segments() -> list[Case]:
    """One bound for the number of energy segments (2..100, MAX_SEGMENTS) in partition and distill."""
    cases: list[Case] = []
    for value in ("1000000", "101", "1", "0", "-5"):
        expected = "at most 100" if int(value) > 100 else "at least 2"
        cases.append(
            (
                f"distill-segments-{value}",
                None,
                (*DISTILL, "--segments", value),
                2,
                (f"'segments' of temperature rule 'energy' must be {expected}",),
            )
        )
        cases.append(
            (
                f"partition-segments-{value}",
                None,
                (*PARTITION, "--segments", value),
                2,
                ("the number of segments must be an integer from 2 to 100",),
            )
        )
    return cases


def _locks() -> list[Case]:
    """A live writer (here: this test process) holds the run or store file: refused, naming its PID."""
    live = "is being written by process {pid}"
    return [
        (
            "train-run-name-live",
            held("runs/live"),
            (*TRAIN, "--run-name", "live"),
            2,
            (live, "runs/.live.lock"),
        ),
        ("distill-run-name-live", held("runs/live"), (*DISTILL, "--run-name", "live"), 2, (live,)),
        ("train-resume-live", held(RUN), (*TRAIN, "--resume", "{store}/" + RUN), 2, (live, "stop it first")),
        ("distill-resume-live", held(RUN), ("distill", "--resume", "{store}/" + RUN, "--quiet"), 2, (live,)),
        ("train-store-file-live", held(TEACHER), TRAIN, 2, (live, "tiny_cnn.safetensors", "--name NAME")),
        (
            "import-store-file-live",
            (lambda ws, st: (held(TEACHER)(ws, st), state_dict_file("model.pth", dict)(ws, st))),
            IMPORT,
            2,
            (live,),
        ),
    ]


def _data() -> list[Case]:
    """Dataset files that cannot be read as images say what is wrong, with a fix the CLI has."""
    cifar = (
        "train",
        "--model",
        "tiny_cnn",
        "--data",
        "cifar100",
        "--data-root",
        "d.npz",
        "--epochs",
        "1",
        "--quiet",
    )
    arrays = {"x_test": images((4, 32, 32, 3)), "y_test": labels(4)}
    return [
        (
            "npz-five-channels",
            npz(
                "d.npz",
                x_train=images((8, 32, 32, 5)),
                y_train=labels(8),
                x_test=images((4, 32, 32, 5)),
                y_test=labels(4),
            ),
            cifar,
            2,
            (
                "cannot tell the channel axis of images of shape (8, 32, 32, 5)",
                "1 (gray) or 3 (RGB) channels",
            ),
        ),
        (
            "npz-float",
            npz("d.npz", x_train=images((8, 32, 32, 3), np.float32), y_train=labels(8), **arrays),
            cifar,
            2,
            ("images must be uint8",),
        ),
        (
            "npz-missing",
            npz("d.npz", x_train=images((8, 32, 32, 3))),
            cifar,
            2,
            ("lacks the arrays y_train, x_test, y_test",),
        ),
        ("npz-not-zip", text_file("d.npz", "hello"), cifar, 2, ("is not a readable .npz file",)),
        (
            "npz-labels",
            npz("d.npz", x_train=images((8, 32, 32, 3)), y_train=labels(5), **arrays),
            cifar,
            2,
            ("give one label per image",),
        ),
        (
            "npz-pickle",
            npz(
                "d.npz",
                x_train=images((8, 32, 32, 3)),
                y_train=labels(8),
                class_names=np.array([{"a": 1}], dtype=object),
                **arrays,
            ),
            cifar,
            2,
            ("needs pickle",),
        ),
        (
            "data-root-missing",
            None,
            (*cifar[:6], "nowhere.npz", *cifar[7:]),
            2,
            ("nowhere.npz does not exist",),
        ),
    ]


def _ranges() -> list[Case]:
    return [
        ("epochs-zero", None, (*TRAIN, "--epochs", "0"), 2, ("epochs must be at least 1",)),
        ("batch-zero", None, (*TRAIN, "--batch-size", "0"), 2, ("batch size must be at least 1",)),
        ("limit-zero", None, (*TRAIN, "--limit-train", "0"), 2, ("--limit-train must be at least 1",)),
        (
            "epochs-huge",
            None,
            (*TRAIN, "--epochs", str(2**70)),
            2,
            ("'epochs' must be an integer of at most 2**63-1",),
        ),
        ("lr-zero", None, (*TRAIN, "--lr", "0"), 2, ("learning rate must be positive",)),
        ("lr-tiny", None, (*TRAIN, "--lr", "1e-400"), 2, ("learning rate must be positive",)),
        ("recipe-unknown", None, (*TRAIN, "--recipe", "fastest"), 2, ("unknown recipe 'fastest'",)),
        ("keep-unknown", None, (*TRAIN, "--keep", "worst"), 2, ("'--keep'",)),
        (
            "model-unknown",
            None,
            ("train", "--model", "resnet9", *DATA),
            2,
            ("unknown model 'resnet9'", "Did you mean"),
        ),
        ("no-model", None, ("train", *DATA), 2, ("say which architecture to train with --model",)),
        ("rate-out-of-range", None, (*DISTILL, "--rate", "1.5"), 2, ("--rate must be in (0, 0.5]",)),
        ("score-rate-range", None, (*SCORE, "--rate", "0.9"), 2, ("--rate must be in (0, 0.5]",)),
    ]


CASES: list[Case] = (
    _numbers() + _seeds() + _set_values() + _config_files() + _names() + _resume_targets()
    + _store_files() + _imports() + _segments() + _locks() + _data() + _ranges()
)  # fmt: skip


def test_the_table_has_at_least_150_distinct_cases() -> None:
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len(ids) >= 150


@pytest.mark.parametrize(("name", "setup", "args", "code", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_refused_in_one_sentence_and_nothing_changes(
    tmp_path: Path, store: Path, refused: Any, name: str, setup: Setup | None, args: tuple[str, ...], code: int,
    fragments: tuple[str, ...],
) -> None:  # fmt: skip
    if setup is not None:
        setup(tmp_path, store)
    try:
        fill = {"{store}": str(store), "{pid}": str(os.getpid())}
        expand = [_fill(a, fill) for a in args]
        refused(expand, code, *(_fill(f, fill) for f in fragments))
    finally:
        while HELD:
            HELD.pop().release()
    assert not (tmp_path / "PWNED").exists()  # no malicious pickle ever ran


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def test_the_table_covers_every_category() -> None:
    """Each group of docs/reliability.md has cases here (the issue's 18 failures among them)."""
    ids = {case[0] for case in CASES}
    for required in (
        "train-lr-inf",  # --lr inf replaced the store's good weights
        "train-seed-11805916",  # --seed 2**70: an overflow, not a sentence
        "config-train-lr-word",  # [train] lr = "fast"
        "set-train.milestones=5",
        'set-train.epochs="1"',
        "config-binary",  # a config file of binary junk
        "score-teacher-classes-abc",  # teacher metadata num_classes = "abc"
        "train-resume-malicious",  # torch's multi-paragraph text
        "distill-resume-empty",  # trained a default teacher for minutes first
        "train-name-../..",  # refused only after training
        "distill-segments-1000000",  # an 83 MB summary.json
        "score-teacher-nan",  # a NaN teacher: matplotlib's error and a NaN score file
        "distill-resume-live",  # --resume of a live run
        "npz-five-channels",  # the hint named an option the CLI does not have
        "distill-teacher-misshaped",  # named the class, not the file
    ):
        assert required in ids, required
    assert json.dumps(sorted(ids))  # ids are plain strings (shown in the test names)
