"""The wandb tracker in offline mode (no account, no network): what it records equals the run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

wandb = pytest.importorskip("wandb", reason="make install installs ekd-wandb with wandb")

import ekd_wandb  # noqa: E402
from wandb.proto import wandb_internal_pb2  # noqa: E402

from ekdcli.sdk.plugins import discover  # noqa: E402

BLOCK, HEADER = 32768, 7  # the .wandb file: a 7-byte header, then LevelDB-log records in 32 KiB blocks


def read_records(path: Path) -> list[Any]:
    """Every protobuf Record of an offline run's ``.wandb`` file (LevelDB log format)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B datastore file"
    records, pending, position = [], b"", HEADER
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # a block's tail too short for a record header is padding
            position += BLOCK - position % BLOCK
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind, chunk = data[position + 6], data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:  # full record
            records.append(chunk)
        elif kind in (2, 3):  # first / middle fragment
            pending += chunk
        elif kind == 4:  # last fragment
            records.append(pending + chunk)
            pending = b""
    return [wandb_internal_pb2.Record.FromString(record) for record in records]


def test_the_hook_registers_the_tracker_by_a_module_string() -> None:
    seen = {}

    def register(name, factory, *, aliases=(), description="", info=None):  # noqa: ANN001, ANN202
        seen[name] = (factory, aliases)

    ekd_wandb.register_trackers(register)
    assert seen == {"wandb": ("ekd_wandb.tracker:WandbTracker", ("weights-and-biases",))}
    component = discover().registries["trackers"].get("wandb")
    assert (component.name, component.plugin) == ("wandb", "ekd-wandb")
    out = subprocess.run(
        [sys.executable, "-c", "import sys, ekd_wandb; print('wandb' in sys.modules, 'torch' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.split() == ["False", "False"]  # registering costs nothing


@pytest.mark.slow
def test_an_offline_run_records_config_epochs_summary_and_the_best_weights(tmp_path: Path) -> None:
    environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_PROJECT": "ekd-test", "OMP_NUM_THREADS": "2"}
    environment.pop("EKD_HOME", None)
    args = ("train", "--model", "tiny_cnn", "--epochs", "2", "--limit-train", "64", "--limit-test", "32")
    done = subprocess.run(
        [sys.executable, "-m", "ekdcli", *args, "--store", "store", "--track", "wandb", "--run-name", "offline", "--json"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / json.loads(done.stdout)["run_dir"]  # stdout is still one JSON document
    (datastore,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = read_records(datastore)
    by_kind: dict[str, list[Any]] = {}
    for record in records:
        by_kind.setdefault(record.WhichOneof("record_type"), []).append(record)

    (run,) = by_kind["run"]
    assert run.run.display_name == "offline" and run.run.project == "ekd-test"
    config = _items(run.run.config.update)
    recorded = _toml(run_dir / "config.toml")
    assert {key: config[key] for key in recorded} == recorded  # the resolved config.toml

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    history = [_items(r.history.item) for r in by_kind["history"]]
    assert [h["_step"] for h in history] == [1, 2]
    for logged, record in zip(history, metrics, strict=True):
        losses, stats = record.pop("losses"), record.pop("stats")
        flat = {key: value for key, value in record.items() if key != "epoch"}
        flat.update({f"losses.{key}": value for key, value in losses.items()})
        flat.update({f"stats.{key}": value for key, value in stats.items()})
        assert {key: logged[key] for key in flat} == flat  # every number of the epoch, as in metrics.jsonl

    summary = json.loads((run_dir / "summary.json").read_text())
    final: dict[str, Any] = {}
    for r in by_kind["summary"]:
        final.update(_items(r.summary.update))
    assert final["summary/best_top1"] == summary["best_top1"] and final["summary/epochs"] == 2
    (artifact,) = [r.artifact for r in by_kind["artifact"] if r.artifact.type == "model"]
    assert artifact.name == "offline-best"
    assert by_kind["exit"][0].exit.exit_code == 0


def _items(items: Any) -> dict[str, Any]:
    """wandb's key/value items: a key, or a nested key path, with its JSON value."""
    return {(item.key or ".".join(item.nested_key)): json.loads(item.value_json) for item in items}


def _toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(path.read_text())
