"""Shared fixtures: a private store per test, tiny thread counts, no stray ekd.toml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _shared_data() -> Path:
    """The real CIFAR files (a 500/100 per class re-split of CIFAR-100, not the official split): $EKD_SHARED_DATA, else ../shared/data beside the checkout,
    else the workplace's /work/shared/data (a clone elsewhere still finds them)."""
    for candidate in (
        os.environ.get("EKD_SHARED_DATA"),
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
        "/work/shared/data",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


SHARED_DATA = _shared_data()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own directory with its own store, so ./ekd.toml and EKD_HOME never leak."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EKD_HOME", str(tmp_path / "store"))
    monkeypatch.delenv("EKD_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("EKD_STRICT_PLUGINS", raising=False)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    os.environ["EKD_SHARED_DATA"] = str(SHARED_DATA)  # for test modules that look at import time


@pytest.fixture
def ekd(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the ekd CLI in-process: ``ekd("train", "--model", ...) -> (exit code, stdout, stderr)``."""
    from ekdcli.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run
