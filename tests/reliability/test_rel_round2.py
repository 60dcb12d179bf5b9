"""Round two of the hostile cases (issue 27), table by table: resume that would change the run,
outputs naming the store's own files, empty values, leftovers, silently wrong input, messages.

Each case is refused before any work, in one sentence naming the cause, and leaves every file of
the test's directory (store included) byte-identical -- so a command that first wrote and then
refused, or trained a default teacher, fails here.  ``{store}``, ``{port}`` (a closed local port)
and ``{ws}`` (the test's directory) stand for themselves in arguments and fragments.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from rel_helpers import DATA, RUN, SCORES, TEACHER
from safetensors.torch import save_file

from ekdcli.config import dumps_toml
from ekdcli.store.weights import load_tensors

Setup = Callable[[Path, Path], None]  # (workspace, store)
Case = tuple[str, Setup | None, tuple[str, ...], int, tuple[str, ...]]
TRAIN = ("train", "--model", "tiny_cnn", *DATA, "--epochs", "1", "--limit-train", "32", "--quiet")
DISTILL = ("distill", "--teacher", "tiny_cnn", "--student", "tiny_cnn", *DATA, "--epochs", "1", "--quiet")
SCORE = ("score", "--teacher", "tiny_cnn", *DATA, "--quiet")
RESUME = ("train", "--resume", "{store}/runs/r", "--quiet")
EXPORT = ("export", "{store}/" + RUN, "--format", "torchscript", "--quiet")
# files the store owns, as --out targets
OWNED = (TEACHER, f"{RUN}/best.safetensors", f"{RUN}/checkpoint.pt", f"{RUN}/config.toml", SCORES)


# ----------------------------------------------------------------------------------- set-ups
def text_file(name: str, text: str | bytes) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        target = ws / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)

    return setup


def stopped_run(
    name: str = "r",
    checkpoint: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    config: Callable[[str], str] | None = None,
) -> Setup:
    """``runs/<name>``: the finished run as a kill after its last epoch leaves it (no summary.json),
    its checkpoint and config.toml rewritten by ``checkpoint`` / ``config`` (None: deleted config)."""

    def setup(ws: Path, store: Path) -> None:
        target = store / "runs" / name
        shutil.copytree(store / RUN, target)
        (target / "summary.json").unlink()
        if checkpoint is not None:
            path = target / "checkpoint.pt"
            torch.save(checkpoint(torch.load(path, weights_only=True)), path)
        if config is not None:
            path = target / "config.toml"
            path.write_text(config(path.read_text()))

    return setup


def without_config(ws: Path, store: Path) -> None:
    stopped_run("r")(ws, store)
    (store / "runs" / "r" / "config.toml").unlink()


def nan_model(payload: dict[str, Any]) -> dict[str, Any]:
    model = {k: v * float("nan") if v.is_floating_point() else v for k, v in payload["model"].items()}
    return {**payload, "model": model}


def epochs_done(n: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda c: {**c, "epoch": n, "recipe": {**c["recipe"], "epochs": n}}


def cosine(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "recipe": {**payload["recipe"], "schedule": "cosine"}}


def edited_config(text: str, train: dict[str, Any] | None = None, **keys: Any) -> str:
    """A run's config.toml with top-level ``keys`` and ``[train]`` entries set (parsed, not patched
    as text: the file's last table may be any)."""
    data = tomllib.loads(text)
    data.update(keys)
    data.setdefault("train", {}).update(train or {})
    return dumps_toml(data)


def as_kd(text: str) -> str:
    return edited_config(text, method="kd", teacher="tiny_cnn")


def nan_weights(name: str) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        weights, metadata = load_tensors(store / TEACHER)
        broken = {k: v * float("nan") if v.is_floating_point() else v for k, v in weights.items()}
        save_file(broken, str(ws / name), metadata=metadata)

    return setup


def integer_teacher(name: str) -> Setup:
    """The prepared teacher with its floating tensors rounded to int64 (as a careless conversion does)."""

    def setup(ws: Path, store: Path) -> None:
        weights, metadata = load_tensors(store / TEACHER)
        rounded = {k: v.round().to(torch.int64) if v.is_floating_point() else v for k, v in weights.items()}
        if name.endswith(".pth"):
            torch.save(rounded, ws / name)
        else:
            save_file(rounded, str(ws / name), metadata=metadata)

    return setup


def link(name: str, target: str) -> Setup:
    """``name`` (in the store when it starts with runs/) as a symbolic link to ``target`` (in the workspace)."""

    def setup(ws: Path, store: Path) -> None:
        where = store if name.startswith("runs/") else ws
        (ws / target).mkdir(parents=True, exist_ok=True)
        (where / name).symlink_to(ws / target)

    return setup


def file_link(name: str, target: str) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        (ws / name).symlink_to(store / target)

    return setup


def fifo(name: str) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        os.mkfifo(ws / name)

    return setup


def raw_pickle(name: str) -> Setup:
    def setup(ws: Path, store: Path) -> None:
        (ws / name).write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))

    return setup


# ----------------------------------------------------------------------------------- tables
def _resume_changes() -> list[Case]:
    """Issue 27 item 2: a resume keeps the experiment; it may change only epochs, device, trackers."""
    run = stopped_run()
    changed = "--resume continues a run as it was started, so it cannot change"
    return [
        ("resume-lr", run, (*RESUME, "--lr", "0.3"), 2, (f"{changed} --lr (unset -> 0.3)",)),
        ("resume-batch", run, (*RESUME, "--batch-size", "8"), 2, (f"{changed} --batch-size (16 -> 8)",)),
        ("resume-seed", run, (*RESUME, "--seed", "5"), 2, (f"{changed} --seed (0 -> 5)",)),
        (
            "resume-model",
            run,
            (*RESUME, "--model", "resnet8"),
            2,
            (f"{changed} --model ('tiny_cnn' -> 'resnet8')",),
        ),
        ("resume-data", run, (*RESUME, "--data", "digits"), 2, (f"{changed} --data ('fake' -> 'digits')",)),
        (
            "resume-limit-train",
            run,
            (*RESUME, "--limit-train", "16"),
            2,
            (f"{changed} --limit-train (32 -> 16)",),
        ),
        ("resume-limit-test", run, (*RESUME, "--limit-test", "8"), 2, (f"{changed} --limit-test (16 -> 8)",)),
        (
            "resume-recipe",
            run,
            (*RESUME, "--recipe", "cifar"),
            2,
            (f"{changed} --recipe ('auto' -> 'cifar')",),
        ),
        ("resume-precision", run, (*RESUME, "--precision", "fp16"), 2, (f"{changed} --precision",)),
        (
            "resume-momentum",
            run,
            (*RESUME, "--set", "train.momentum=0.5"),
            2,
            (f"{changed} --set train.momentum",),
        ),
        ("resume-deterministic", run, (*RESUME, "--deterministic"), 2, (f"{changed} --deterministic",)),
        (
            "resume-method",
            stopped_run(config=as_kd),
            ("distill", "--resume", "{store}/runs/r", "--method", "dkd", "--quiet"),
            2,
            (f"{changed} --method ('kd' -> 'dkd')", "start a new run"),
        ),
        (
            "resume-another-config",
            run,
            (*RESUME, "--config", "other.toml"),
            2,
            (f"{changed} --seed (0 -> 9)",),
        ),
        ("resume-name", run, (*RESUME, "--name", "other"), 2, ("the run was started with --name tiny_cnn",)),
        ("resume-keep", run, (*RESUME, "--keep", "last"), 2, ("the run was started with --keep best",)),
        ("resume-no-config-train", without_config, RESUME, 2, ("has no config.toml", "cannot be resumed")),
        (
            "resume-no-config-distill",  # trained a default resnet32 teacher for 30 epochs
            without_config,
            ("distill", "--resume", "{store}/runs/r", "--quiet"),
            2,
            ("has no config.toml", "start a new run"),
        ),
        (
            "resume-not-a-run",  # asked for --model instead
            text_file("notes/readme.txt", "x"),
            ("train", "--resume", "notes", "--quiet"),
            2,
            ("holds no checkpoint.pt, so there is nothing to resume (it is not a run directory)",),
        ),
        (
            "resume-fewer-epochs",
            stopped_run(checkpoint=epochs_done(2)),
            RESUME,
            2,
            ("--epochs 1 is fewer than the 2 epochs the run has trained",),
        ),
        (
            "resume-cosine-epochs",
            stopped_run(checkpoint=cosine, config=lambda t: edited_config(t, train={"schedule": "cosine"})),
            (*RESUME, "--epochs", "3"),
            2,
            ("--epochs cannot change on resume with the cosine schedule",),
        ),
        (
            "resume-nan-checkpoint",  # was marked finished
            stopped_run(checkpoint=nan_model),
            RESUME,
            2,
            ("checkpoint.pt is damaged (NaN or infinite values in model.", "start a new run"),
        ),
    ]


def _outputs() -> list[Case]:
    """Item 3: no output option names a file (or folder) the store owns, --force or not."""
    inside = "is inside the store's own files"
    cases: list[Case] = []
    for target in OWNED:
        label = target.replace("/", "-")
        cases.append(
            (f"score-out-{label}", None, (*SCORE, "--force", "--out", f"{{store}}/{target}"), 2, (inside,))
        )
        cases.append(
            (f"export-out-{label}", None, (*EXPORT, "--force", "--out", f"{{store}}/{target}"), 2, (inside,))
        )
    return cases + [
        ("export-out-no-force", None, (*EXPORT, "--out", f"{{store}}/{RUN}/last.safetensors"), 2, (inside,)),
        ("score-out-link", file_link("t.safetensors", TEACHER), (*SCORE, "--force", "--out", "t.safetensors"), 2, (inside,)),
        ("bench-out-run", None, ("bench", *DATA, "--out", f"{{store}}/{RUN}"), 2, (inside,)),
        ("bench-engine-out-models", None, ("bench-engine", *DATA, "--out", "{store}/models"), 2, (inside,)),
        ("report-out-run", None, ("report", f"{{store}}/{RUN}", "--out", f"{{store}}/{RUN}"), 2, (inside,)),
        ("evaluate-plot-run", None, ("evaluate", f"{{store}}/{RUN}", "--plot", f"{{store}}/{RUN}/curves.png"), 2, ("--plot", inside)),
    ]  # fmt: skip


def _empty_values() -> list[Case]:
    """Item 4: empty is refused (it meant "here" or "the default"); NUL characters too."""
    empty = "is empty (give a value or leave it out)"
    return [
        ("name-empty", None, (*TRAIN, "--name", ""), 2, ("--name is empty",)),
        ("name-blank", None, (*TRAIN, "--name", "  "), 2, ("--name is empty",)),
        ("store-empty", None, (*TRAIN, "--store", ""), 2, (f"'store' {empty}",)),
        ("teacher-empty", None, (*DISTILL[:1], "--teacher", "", *DISTILL[3:]), 2, (f"'teacher' {empty}",)),
        ("student-empty", None, (*DISTILL[:3], "--student", "", *DISTILL[5:]), 2, (f"'student' {empty}",)),
        ("run-name-empty", None, (*TRAIN, "--run-name", ""), 2, (f"'run_name' {empty}",)),
        ("data-empty", None, ("train", "--model", "tiny_cnn", "--data", ""), 2, (f"'data' {empty}",)),
        ("data-root-empty", None, (*TRAIN, "--data-root", ""), 2, (f"'data_root' {empty}",)),
        ("method-empty", None, (*DISTILL, "--method", ""), 2, (f"'method' {empty}",)),
        ("set-run-name-empty", None, (*TRAIN, "--set", 'run_name=""'), 2, ("--set: 'run_name' is empty",)),
        ("config-store-empty", text_file("c.toml", 'store = ""\n'), (*TRAIN, "--config", "c.toml"), 2, (f"c.toml: 'store' {empty} (line 1)",)),
        ("set-nul", None, (*TRAIN, "--set", 'data_root="a\\u0000b"'), 2, ("'data_root' holds a NUL character",)),
        ("config-nul", text_file("c.toml", 'run_name = "a\\u0000b"\n'), (*TRAIN, "--config", "c.toml"), 2, ("holds a NUL character", "(line 1)")),
    ]  # fmt: skip


def _wrong_input() -> list[Case]:
    """Items 5 and 7: refused before anything is written or trained."""
    integer = ("integer-typed weights", "conv1.weight (int64)")
    return [
        ("partition-per-class-zero", None, ("partition", "--teacher", "tiny_cnn", *DATA, "--per-class", "0", "--quiet"), 2, ("--per-class must be at least 1",)),
        ("partition-classes-zero", None, ("partition", "--teacher", "tiny_cnn", *DATA, "--classes", "0", "--quiet"), 2, ("--classes must be at least 1",)),
        ("score-integer-teacher", integer_teacher("t.safetensors"), ("score", "--teacher", "t.safetensors", *DATA, "--quiet"), 2, integer),
        ("distill-integer-teacher", integer_teacher("t.safetensors"), (*DISTILL[:1], "--teacher", "t.safetensors", *DISTILL[3:]), 2, integer),
        ("evaluate-integer-weights", integer_teacher("t.safetensors"), ("evaluate", "t.safetensors", *DATA, "--quiet"), 2, integer),
        ("import-integer-weights", integer_teacher("m.pth"), ("import", "m.pth", "--model", "tiny_cnn", *DATA, "--quiet"), 2, integer),
        ("digits-data-root", text_file("ok.npz", b"x"), ("train", "--model", "tiny_cnn", "--data", "digits", "--data-root", "ok.npz", "--quiet"), 2, ("data 'digits' is made in memory and reads no files", "--data-root ok.npz")),
        ("fake-data-root", text_file("ok.npz", b"x"), (*TRAIN, "--data-root", "ok.npz"), 2, ("data 'fake' is made in memory",)),
        ("config-limit-train-zero", text_file("c.toml", "limit_train = 0\n"), (*TRAIN, "--config", "c.toml"), 2, ("c.toml: 'limit_train' must be at least 1, not 0 (line 1)",)),
        ("config-limit-test-zero", text_file("c.toml", "limit_test = 0\n"), (*DISTILL, "--config", "c.toml"), 2, ("'limit_test' must be at least 1",)),
        ("config-train-epochs-zero", text_file("c.toml", "[train]\nepochs = 0\n"), (*TRAIN[:-5], "--config", "c.toml"), 2, ("'train.epochs' must be at least 1, not 0 (line 2)",)),
        ("config-train-batch-zero", text_file("c.toml", "[train]\nbatch_size = 0\n"), (*TRAIN, "--config", "c.toml"), 2, ("'train.batch_size' must be at least 1",)),
        ("set-epochs-zero", None, (*TRAIN[:-5], "--set", "epochs=0"), 2, ("--set: 'epochs' must be at least 1",)),
        ("train-energy-unknown", None, (*TRAIN, "--set", "energy.bogus=1"), 2, ("unknown option 'bogus' in [energy]",)),
        ("train-energy-segments", None, (*TRAIN, "--set", "energy.segments=1000000"), 2, ("the number of segments must be an integer from 2 to 100",)),
        ("train-config-energy-unknown", text_file("c.toml", "[energy]\nt_pluss = 1.0\n"), (*TRAIN, "--config", "c.toml"), 2, ("unknown option 't_pluss' in [energy]", "(set in c.toml line 2)")),
        ("bench-aug-rates-gap", None, ("bench", *DATA, "--aug-rates", "0.1,,0.5"), 2, ("--aug-rates '0.1,,0.5' has an empty entry",)),
        ("bench-aug-rates-trailing", None, ("bench", *DATA, "--aug-rates", "0.1,"), 2, ("has an empty entry",)),
        ("bench-aug-rates-leading", None, ("bench", *DATA, "--aug-rates", ",0.5"), 2, ("has an empty entry",)),
        ("run-name-link", link("runs/linkrun", "elsewhere"), (*TRAIN, "--run-name", "linkrun"), 2, ("runs/linkrun is a link", "choose another --run-name")),
        ("distill-run-name-link", link("runs/linkrun", "elsewhere"), (*DISTILL, "--run-name", "linkrun"), 2, ("is a link",)),
    ]  # fmt: skip


def _services_and_launch() -> list[Case]:
    """Items 9 and 10: an unreachable tracking server in seconds; --nproc checks once, before launching."""
    return [
        ("tracking-uri-closed-port", None, (*TRAIN, "--track", "tensorboard", "--tracking-uri", "http://127.0.0.1:{port}"), 2, ("--tracking-uri http://127.0.0.1:{port} is unreachable",)),
        ("tracking-uri-no-host", None, (*TRAIN, "--track", "tensorboard", "--tracking-uri", "http://"), 2, ("is unreachable",)),
        ("nproc-train-model", None, ("train", "--model", "resnet9", *DATA, "--nproc", "2"), 2, ("unknown model 'resnet9'",)),
        ("nproc-distill-method", None, (*DISTILL, "--method", "kdd", "--nproc", "2"), 2, ("unknown method 'kdd'",)),
        ("nproc-score-teacher", None, ("score", "--teacher", "resnet8", *DATA, "--nproc", "2"), 2, ("no trained teacher 'resnet8'",)),
        ("nproc-train-name", None, (*TRAIN, "--name", "", "--nproc", "2"), 2, ("--name is empty",)),
    ]  # fmt: skip


def _messages() -> list[Case]:
    """Item 12: each a sentence that says what is wrong, naming the file where one is involved."""
    return [
        ("config-directory", text_file("d/x", "x"), (*TRAIN, "--config", "d"), 2, ("'--config'", "is a directory")),
        ("config-fifo", fifo("f.toml"), (*TRAIN, "--config", "f.toml"), 2, ("config file f.toml is not a regular file",)),
        ("config-dev-zero", None, (*TRAIN, "--config", "/dev/zero"), 2, ("config file /dev/zero is not a regular file",)),
        ("config-unknown-method", text_file("c.toml", 'method = "kdd"\n'), (*DISTILL, "--config", "c.toml"), 2, ("unknown distiller 'kdd'", "(set in c.toml line 1)")),
        ("config-unknown-data", text_file("c.toml", 'seed = 1\ndata = "fakes"\n'), ("train", "--model", "tiny_cnn", "--config", "c.toml"), 2, ("unknown dataset 'fakes'", "(set in c.toml line 2)")),
        ("evaluate-nan-weights", nan_weights("n.safetensors"), ("evaluate", "n.safetensors", *DATA, "--quiet"), 2, ("n.safetensors holds NaN or infinite weights",)),
        ("import-raw-pickle", raw_pickle("raw.pkl"), ("import", "raw.pkl", "--model", "tiny_cnn", *DATA, "--quiet"), 2, ("raw.pkl is not a readable PyTorch checkpoint",)),
        ("sweep-campaign-json-junk", text_file("store/campaigns/c/campaign.json", "[1,2"), ("sweep", "--name", "c"), 2, ("campaign.json is not readable JSON",)),
        ("report-campaign-json-junk", text_file("store/campaigns/c/campaign.json", "[1,2"), ("report", "c"), 2, ("campaign.json is not readable JSON",)),
        ("sweep-grid-epochs-zero", text_file("s.toml", 'data = "fake"\nmethod = "kd"\n'), ("sweep", "s.toml", "--grid", "train.epochs=0,1", "--dry-run"), 2, ("'train.epochs' must be at least 1",)),
    ]  # fmt: skip


CASES: list[Case] = _resume_changes() + _outputs() + _empty_values() + _wrong_input() + _services_and_launch() + _messages()  # fmt: skip


def test_the_round_two_table_has_distinct_ids() -> None:
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len(ids) >= 70


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(("name", "setup", "args", "code", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_round_two_refused_in_one_sentence_and_nothing_changes(
    tmp_path: Path, store: Path, refused: Any, name: str, setup: Setup | None, args: tuple[str, ...], code: int,
    fragments: tuple[str, ...],
) -> None:  # fmt: skip
    (tmp_path / "other.toml").write_text(
        (store / RUN / "config.toml").read_text().replace("seed = 0", "seed = 9")
    )
    if setup is not None:
        setup(tmp_path, store)
    fill = {"{store}": str(store), "{port}": str(_closed_port()), "{ws}": str(tmp_path)}

    def expand(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    refused([expand(a) for a in args], code, *(expand(f) for f in fragments))
