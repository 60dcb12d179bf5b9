"""``--nproc`` and life under torchrun, without starting torchrun: argv building, re-launch wiring,
silent ranks, and rank 0's choices shared with every rank (two gloo processes)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import pytest
import torch.multiprocessing as mp

from ekdcli.cli import launch
from ekdcli.cli.commands.score import score
from ekdcli.cli.commands.train import train
from ekdcli.cli.main import main
from ekdcli.engine import ddp
from ekdcli.util.errors import UsageError

TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]


# ----------------------------------------------------------------- argv
@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["train", "--nproc", "2", "--model", "resnet8"], ["train", "--model", "resnet8"]),
        (["train", "--model", "resnet8", "--nproc=4"], ["train", "--model", "resnet8"]),
        (["score", "--teacher", "t", "--json"], ["score", "--teacher", "t", "--json"]),
        (["train", "--nproc", "3"], ["train"]),
    ],
)
def test_strip_nproc(args: list[str], kept: list[str]) -> None:
    assert launch.strip_nproc(args) == kept


def test_torchrun_argv_runs_the_same_command_without_nproc() -> None:
    argv = launch.torchrun_argv(3, ["distill", "--method", "kd", "--nproc", "3", "--json"], python="/py")
    assert argv == ["/py", *TORCHRUN, "3", "-m", "ekdcli", "distill", "--method", "kd", "--json"]
    assert launch.torchrun_argv(2, ["train"])[0] == sys.executable


def test_torchrun_argv_rejects_zero_processes() -> None:
    with pytest.raises(UsageError, match="--nproc must be at least 1, not 0"):
        launch.torchrun_argv(0, ["train"])


def test_command_args_repeat_what_was_typed() -> None:
    typed = [
        "--model",
        "resnet8",
        "--epochs",
        "2",
        "--json",
        "--no-compile",
        "--nproc",
        "2",
        "--keep",
        "last",
    ]
    ctx = train.make_context("train", list(typed))
    args = launch.command_args(ctx)
    assert args[0] == "train"
    # Same options, same values (order follows the command's declaration, not the typing).
    pairs = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i] in ("--model", "--epochs")}
    assert pairs == {"--model": "resnet8", "--epochs": "2"}
    assert {"--json", "--no-compile", "--nproc", "--keep"} <= set(args)
    assert args.count("--keep") == 1 and args[args.index("--keep") + 1] == "last"
    # Defaults were not typed and are not repeated (--keep best, --rate 0.2 of score).
    assert "--keep" not in launch.command_args(train.make_context("train", ["--model", "m"]))
    score_args = launch.command_args(score.make_context("score", ["--teacher", "t", "--force"]))
    assert score_args == ["score", "--teacher", "t", "--force"]
    # Re-parsing the rebuilt arguments gives the same parameters as the typed ones.
    again = train.make_context("train", args[1:])
    assert again.params == ctx.params


def test_nproc_relaunches_through_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    launched: dict[str, Any] = {}

    class FakePopen:
        def __init__(self, argv: list[str], env: dict[str, str]) -> None:
            launched["argv"], launched["env"] = argv, env

        def wait(self) -> int:
            return 7

    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launch.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(launch, "_finish", lambda: pytest.fail("the launcher itself must not run the job"))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "resnet8", "--nproc", "2", "--epochs", "1", "--device", "cpu"])
    assert exit_info.value.code == 7  # torchrun's exit code
    argv = launched["argv"]
    assert argv[:6] == [sys.executable, *TORCHRUN, "2"] and argv[6:9] == ["-m", "ekdcli", "train"]
    assert "--nproc" not in argv
    rest = argv[9:]
    assert rest[rest.index("--model") + 1] == "resnet8" and rest[rest.index("--epochs") + 1] == "1"
    assert rest[rest.index("--device") + 1] == "cpu"
    assert "OMP_NUM_THREADS" in launched["env"]


def test_bad_nproc_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--teacher", "t", "--nproc", "0"])
    assert exit_info.value.code == 2
    assert "--nproc" in capsys.readouterr().err


def test_nproc_one_and_nproc_under_torchrun_run_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "relaunch", lambda *a: pytest.fail("must not re-launch"))
    ctx = click.Context(train)
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with launch.multiprocess(1, ctx):
        ran_alone = True
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with launch.multiprocess(2, ctx):  # torchrun already chose the number of processes
        ran_under_torchrun = True
    assert ran_alone and ran_under_torchrun


def test_ranks_other_than_zero_are_silent_but_errors_get_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with launch.multiprocess(None):
        print("rank 1 says hello")
        print("rank 1 warns", file=sys.stderr)
    assert capsys.readouterr() == ("", "")
    with pytest.raises(UsageError), launch.multiprocess(None):
        raise UsageError("bad input on rank 1.")
    print("streams are back")
    assert capsys.readouterr().out == "streams are back\n"
    monkeypatch.setenv("RANK", "0")
    with launch.multiprocess(None):
        print("rank 0 speaks")
    assert capsys.readouterr().out == "rank 0 speaks\n"


# ----------------------------------------------------------------- from_rank0
def test_from_rank0_alone_is_a_plain_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ddp.from_rank0(lambda: "run-1") == "run-1"
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched, but the group was never joined: a bug
    with pytest.raises(RuntimeError, match="create the Runtime first"):
        ddp.from_rank0(lambda: "run-1")


def _share_worker(rank: int, init_file: str, out_dir: str) -> None:
    from ekdcli.engine import ddp

    ddp.init(rank, 2, f"file://{init_file}", backend="gloo")
    try:
        name = ddp.from_rank0(lambda: f"run-made-by-rank{rank}")

        def fail() -> str:
            raise UsageError(f"rank {rank} refuses.")

        try:
            ddp.from_rank0(fail)
            error = "none"
        except UsageError as exc:
            error = exc.message
        Path(out_dir, f"rank{rank}.txt").write_text(f"{name}\n{error}\n")
    finally:
        ddp.cleanup()


def test_from_rank0_gives_every_rank_rank0s_value_or_error(tmp_path: Path) -> None:
    mp.spawn(_share_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        lines = (tmp_path / f"rank{rank}.txt").read_text().splitlines()
        assert lines == ["run-made-by-rank0", "rank 0 refuses."], rank
