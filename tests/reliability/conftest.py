"""Fixtures of the reliability suite: the prepared store (built once, copied per test) and the
in-process refusal check (rel_helpers.py has the helpers)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from rel_helpers import DATA, RUN, SMALL, one_line_error, snapshot


def _cli(*args: str) -> None:
    from ekdcli.cli.main import main

    try:
        main(list(args))
    except SystemExit as exc:
        assert exc.code in (0, None), f"preparing the store failed: ekd {' '.join(args)}"


@pytest.fixture(scope="session")
def prepared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: a teacher (tiny_cnn, 1 epoch), its score file, and the finished run ``done``."""
    store = tmp_path_factory.mktemp("template") / "store"
    common = ("--store", str(store), *DATA, "--quiet")
    _cli("train", "--model", "tiny_cnn", *common, *SMALL, "--run-name", "done")
    _cli("score", "--teacher", "tiny_cnn", *common)
    return store


@pytest.fixture
def store(prepared_store: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared store at ``$EKD_HOME`` (``<tmp_path>/store``)."""
    target = tmp_path / "store"
    shutil.copytree(prepared_store, target)
    config = target / RUN / "config.toml"  # the run records its store: point it at this copy
    config.write_text(config.read_text().replace(str(prepared_store.resolve()), str(target.resolve())))
    return target


@pytest.fixture
def refused(ekd: Callable[..., tuple[int, str, str]], tmp_path: Path) -> Callable[..., str]:
    """``refused(args, code, *fragments)``: run ``ekd ARGS`` in-process, assert the one-line refusal
    and that nothing under the test's directory (store included) changed; returns the line."""

    def run(args: list[str] | tuple[str, ...], code: int, *fragments: str) -> str:
        before = snapshot(tmp_path)
        exit_code, out, err = ekd(*args)
        assert "Traceback" not in out, out
        line = one_line_error(exit_code, err, code, *fragments)
        assert snapshot(tmp_path) == before, "the command changed files although it failed"
        return line

    return run
