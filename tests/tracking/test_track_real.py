"""--track tensorboard,mlflow with the real packages: what they store equals the run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest.importorskip("tensorboard", reason="the test extra installs tensorboard (pip install -e '.[test]')")
pytest.importorskip("mlflow", reason="the test extra installs mlflow-skinny (pip install -e '.[test]')")

TINY = ("--limit-train", "128", "--limit-test", "64")


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {
        k: v
        for k, v in _flat(record).items()
        if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


@pytest.fixture
def tracked_run(ekd) -> Path:  # noqa: ANN001
    code, _, err = ekd("train", "--model", "resnet8", "--epochs", "1", *TINY, "--quiet")
    assert code == 0, err
    args = ("--teacher", "resnet8", "--student", "tiny_cnn", "--method", "energy_kd", "--epochs", "2", *TINY)
    code, out, err = ekd("distill", *args, "--track", "tensorboard,mlflow", "--run-name", "tracked", "--json")
    assert code == 0, err
    run_dir = Path(json.loads(out)["run_dir"])
    assert "tracking with tensorboard, mlflow" in (run_dir / "run.log").read_text().splitlines()
    return run_dir


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside MLflow's SQLAlchemy store, not ekd
def test_tensorboard_and_mlflow_hold_the_runs_config_and_metrics(tracked_run: Path) -> None:
    run_dir = tracked_run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    config_text = (run_dir / "config.toml").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["epoch"] for r in records] == [1, 2]
    _check_tensorboard(run_dir, records, config_text, summary)
    _check_mlflow(run_dir, records, tomllib.loads(config_text), summary)


def _check_tensorboard(
    run_dir: Path, records: list[dict[str, Any]], config_text: str, summary: dict[str, Any]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    for key in _numbers(records[0]):
        tag = key.replace(".", "/")
        found = [(e.step, e.value) for e in events.Scalars(tag)]
        assert found == [
            (r["epoch"], pytest.approx(r[key] if "." not in key else _flat(r)[key], rel=1e-6))
            for r in records
        ], tag
    sizes = summary["objective"]["distiller"]["train_counts"]
    for group, size in sizes.items():
        assert [(e.step, e.value) for e in events.Scalars(f"energy/group_sizes/{group}")] == [(0, size)]
    (text,) = events.Tensors("config/text_summary")
    assert text.tensor_proto.string_val[0].decode() == f"```toml\n{config_text.rstrip()}\n```"


def _check_mlflow(
    run_dir: Path, records: list[dict[str, Any]], config: dict[str, Any], summary: dict[str, Any]
) -> None:
    from mlflow.tracking import MlflowClient

    store = Path(config["store"])
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ekd")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_dir.name == "tracked" and run.info.status == "FINISHED"
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == run.info.run_id
    expected = {k: v if isinstance(v, str) else json.dumps(v) for k, v in _flat(config).items()}
    assert run.data.params == expected  # the resolved config.toml, every key
    for key in _numbers(records[0]):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == [(r["epoch"], _flat(r)[key]) for r in records], key  # float64: exact
    sizes = summary["objective"]["distiller"]["train_counts"]
    assert {g: run.data.metrics[f"energy.group_sizes.{g}"] for g in sizes} == sizes
    assert run.data.metrics["summary.best_top1"] == summary["best_top1"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"best.safetensors", "config.toml", "summary.json", "curves.png", "run.log"}
    copy = client.download_artifacts(run.info.run_id, "best.safetensors", str(run_dir.parent))
    assert Path(copy).read_bytes() == (run_dir / "best.safetensors").read_bytes()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside MLflow's SQLAlchemy store, not ekd
def test_a_resumed_run_continues_its_mlflow_run(tmp_path: Path) -> None:
    from ekd_plugins.trackers.mlflow_tracker import MlflowTracker
    from mlflow.tracking import MlflowClient

    from ekdcli.sdk.contracts import RunInfo

    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"  # a --tracking-uri: the store's database stays untouched
    config = {"epochs": 2, "energy": {"preset": "official"}}
    first = MlflowTracker()
    first.start(RunInfo("r", run_dir, "train", config, "", tmp_path, tracking_uri=uri))
    first.log_epoch({"epoch": 1, "loss": 2.5})
    first.finish("failed", None, {})  # the first session was killed
    second = MlflowTracker()
    second.start(
        RunInfo("r", run_dir, "train", config, "", tmp_path, tracking_uri=uri, resumed_after_epoch=1)
    )
    second.log_epoch({"epoch": 2, "loss": 1.5})
    second.finish("finished", {"best_top1": 0.5, "epochs": 2}, {})
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ekd").experiment_id])
    assert run.info.run_id == first.run_id == second.run_id and run.info.status == "FINISHED"
    assert run.data.params == {"epochs": "2", "energy.preset": "official"}
    assert sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")) == [
        (1, 2.5),
        (2, 1.5),
    ]
    assert run.data.metrics["summary.best_top1"] == 0.5
    assert not (tmp_path / "mlflow.db").exists()
