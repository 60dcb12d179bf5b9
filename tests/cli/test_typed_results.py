"""Each job's typed result gives, through ``as_dict()``, the ``--json`` document the command printed
before the jobs returned dataclasses: the same keys, paths as text, nothing JSON cannot hold.

The key sets are written out here (not derived from the classes), so adding, renaming or dropping
a field fails until the JSON change is meant and this list follows it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ekdcli.jobs import bench, bench_engine
from ekdcli.jobs.bench import BenchResult
from ekdcli.jobs.bench_engine import EngineBenchResult
from ekdcli.jobs.demo import DemoResult
from ekdcli.jobs.distill import DistillResult
from ekdcli.jobs.evaluate import EvaluateResult
from ekdcli.jobs.export import ExportResult
from ekdcli.jobs.import_ import ImportResult

EXPORT_KEYS = {
    "path", "format", "arch", "weights", "run_dir", "data", "with_preprocessing", "input", "mean", "std",
    "num_classes", "checked_images", "max_abs_difference", "tolerance", "metadata",
}  # fmt: skip
IMPORT_KEYS = {"weights", "arch", "data", "tensors"}
EVALUATE_KEYS = {
    "split", "which", "energy_groups", "targets", "groups", "requested", "skipped", "interrupted", "cached",
}  # fmt: skip
BENCH_KEYS = {
    "method", "augment", "mode", "teacher", "student", "data", "batch_size", "steps_per_epoch",
    "steps_per_round", "rounds", "extrapolated", "teacher_cache", "rows", "files",
}  # fmt: skip
ENGINE_BENCH_KEYS = {
    "method", "augment", "teacher", "student", "data", "batch_size", "device", "device_name", "threads",
    "steps_per_round", "rounds", "default", "reference_variant", "rows", "failed", "verdict", "files",
}  # fmt: skip
DEMO_KEYS = {"artifacts", "kd", "energy_kd", "evaluation", "bench", "minutes"}


class _Quiet:
    def say(self, message: str = "") -> None:
        pass


def _plain_json(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as JSON gives it back (no Path or other object left for ``default=str``)."""
    text = json.dumps(payload, sort_keys=True)  # no default=: a Path here raises TypeError
    assert json.loads(text) == payload
    return payload


def _export(run_dir: Path | None) -> ExportResult:
    return ExportResult(
        path=Path("/s/best.onnx"), format="onnx", arch="resnet8", weights=Path("/s/best.safetensors"),
        run_dir=run_dir, data="cifar100", with_preprocessing=False,
        input={"dtype": "float32", "shape": ["batch", 3, 32, 32]}, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2],
        num_classes=100, checked_images=256, max_abs_difference=3e-6, tolerance=1e-4,
        metadata={"arch": "resnet8"},
    )  # fmt: skip


def _evaluation() -> EvaluateResult:
    target = {"target": "r1", "top1": 0.5, "ece": None}
    return EvaluateResult("test", "best", False, [target], [{"label": "kd", "n": 1}], 1, ["r2"], False, 0)


def _bench_result(files: dict[str, str]) -> BenchResult:
    row = {"rate": 0.1, "seconds_per_step": 0.02, "seconds_per_epoch": 0.1, "images_per_s": 3200.0,
           "augmented_per_step": 6.4, "increase": 0.0, "paper_increase": 0.0, "increase_range": [-0.01, 0.02],
           "noise": 0.03}  # fmt: skip
    return BenchResult("kd", "he-cutmix", "extra", "tiny_cnn", "tiny_cnn", "fake", 64, 5, 2, 3, True, None,
                       [row], files)  # fmt: skip


def _engine_result(files: dict[str, str]) -> EngineBenchResult:
    row = {"variant": "fp32", "precision": "fp32", "channels_last": True, "compile": False, "cache": "off",
           "images_per_s": 900.0, "images_per_s_rounds": [880.0, 900.0], "vs_default": 1.0,
           "cache_hit_rate": None}  # fmt: skip
    default = {"precision": "fp32", "why": "configured", "channels_last": True, "compile": False,
               "teacher_cache": False}  # fmt: skip
    return EngineBenchResult("kd", None, "tiny_cnn", "tiny_cnn", "fake", 64, "cpu", "some cpu", 2, 2, 2,
                             default, "fp32", [row], {"bf16": "RuntimeError: no"}, "fp32 here.", files)  # fmt: skip


def test_export_result_as_json() -> None:
    payload = _plain_json(_export(Path("/runs/r1")).as_dict())
    assert set(payload) == EXPORT_KEYS
    assert (payload["path"], payload["weights"], payload["run_dir"]) == (
        "/s/best.onnx",
        "/s/best.safetensors",
        "/runs/r1",
    )
    assert payload["input"] == {"dtype": "float32", "shape": ["batch", 3, 32, 32]}
    assert _export(None).as_dict()["run_dir"] is None  # a stored model or a file: no run


def test_import_result_as_json() -> None:
    result = ImportResult(Path("/s/models/cifar100/resnet8.safetensors"), "resnet8", "cifar100", 42)
    payload = _plain_json(result.as_dict())
    assert payload == {"weights": "/s/models/cifar100/resnet8.safetensors", "arch": "resnet8",
                       "data": "cifar100", "tensors": 42}  # fmt: skip


def test_evaluate_result_as_json() -> None:
    payload = _plain_json(_evaluation().as_dict())
    assert set(payload) == EVALUATE_KEYS
    assert payload["targets"] == [{"target": "r1", "top1": 0.5, "ece": None}] and payload["skipped"] == ["r2"]
    assert payload["requested"] == 1 and payload["interrupted"] is False and payload["cached"] == 0


def test_bench_result_is_what_bench_json_holds_plus_the_files(tmp_path: Path) -> None:
    """``run_bench`` writes the payload, then returns it with the files: the two must agree."""
    expected = _bench_result({})
    payload = {k: v for k, v in expected.as_dict().items() if k != "files"}
    files = bench._write(_Quiet(), dict(payload), tmp_path)
    assert files == {name: str(tmp_path / f"bench.{name}") for name in ("txt", "json", "png")}
    result = BenchResult(**payload, files=files)
    as_json = _plain_json(result.as_dict())
    assert set(as_json) == BENCH_KEYS
    assert json.loads((tmp_path / "bench.json").read_text()) == {
        k: v for k, v in as_json.items() if k != "files"
    }


def test_engine_bench_result_is_what_bench_engine_json_holds_plus_the_files(tmp_path: Path) -> None:
    payload = {k: v for k, v in _engine_result({}).as_dict().items() if k != "files"}
    files = bench_engine._write(_Quiet(), dict(payload), tmp_path)
    assert files == {"txt": str(tmp_path / "bench-engine.txt"), "json": str(tmp_path / "bench-engine.json")}
    as_json = _plain_json(EngineBenchResult(**payload, files=files).as_dict())
    assert set(as_json) == ENGINE_BENCH_KEYS
    assert json.loads((tmp_path / "bench-engine.json").read_text()) == {
        k: v for k, v in as_json.items() if k != "files"
    }
    assert "bf16" in (tmp_path / "bench-engine.txt").read_text()  # the failed variant's line


def test_demo_result_nests_each_steps_own_json() -> None:
    def distilled(method: str) -> DistillResult:
        return DistillResult(Path(f"/runs/{method}"), method, None, None, "tiny_cnn", "tiny_cnn", "digits",
                             0.5, 0.9, 1, 0.5, 0.9, {"loss": method})  # fmt: skip

    kd, energy = distilled("kd"), distilled("energy_kd")
    benched = _bench_result({"txt": "/b/bench.txt", "json": "/b/bench.json", "png": "/b/bench.png"})
    demo = DemoResult({"teacher": "/s/t.safetensors"}, kd, energy, _evaluation(), benched, 1.5)
    payload = _plain_json(demo.as_dict())
    assert set(payload) == DEMO_KEYS
    assert payload["kd"] == kd.as_dict() and payload["kd"]["run_dir"] == "/runs/kd"
    assert payload["energy_kd"]["method"] == "energy_kd"
    assert payload["evaluation"] == _evaluation().as_dict() and payload["bench"] == benched.as_dict()
    assert payload["artifacts"] == {"teacher": "/s/t.safetensors"} and payload["minutes"] == 1.5
