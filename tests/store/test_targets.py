"""The one resolver of what a reference names (ekdcli.jobs.targets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ekdcli.jobs.targets import expand_targets, named_run, resolve, runs_among
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError


def _run(root: Path, name: str, data: str = "digits") -> Path:
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(f'data = "{data}"\n')
    (run / "best.safetensors").write_bytes(b"x")
    (run / "summary.json").write_text("{}")
    return run


def test_each_kind_of_reference_resolves_to_its_weights(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    run = _run(store.root, "a")
    model = store.model_path("digits", "resnet8")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"m")
    by_dir = resolve(str(run), store, "best", "digits")
    assert (by_dir.kind, by_dir.weights, by_dir.run_dir) == ("run", run / "best.safetensors", run)
    assert by_dir.run_values == {"data": "digits"}
    assert resolve("a", store, "best", None).run_dir == run  # a run name in the store
    assert resolve(str(run / "summary.json"), store, "best", None).run_dir == run  # a file of a run
    assert resolve(str(run / "best.safetensors"), store, "best", None).kind == "weights"
    stored = resolve("resnet8", store, "best", "digits")
    assert (stored.kind, stored.weights, stored.run_dir) == ("store", model, None)


def test_what_names_nothing_is_refused_with_where_it_looked(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(UsageError, match="no target 'nothing': looked for"):
        resolve("nothing", store, "best", "digits")
    with pytest.raises(UsageError, match="the model weights file w.safetensors does not exist"):
        resolve("w.safetensors", store, "best", "digits", role="model")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="is a directory but not a run directory"):
        resolve(str(tmp_path / "plain"), store, "best", None)


def test_directories_of_runs_and_patterns_stand_for_their_runs(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    a, b = _run(store.root, "a"), _run(store.root, "b")
    assert expand_targets([str(store.runs_dir())]) == [str(a), str(b)]
    assert expand_targets(["runs/*"], store) == [str(a), str(b)]  # a pattern expanded in the store
    assert runs_among(store, ["a", str(store.runs_dir()), "resnet8"]) == [a, b]
    assert named_run(store, "resnet8") is None and named_run(store, "x/y") is None
