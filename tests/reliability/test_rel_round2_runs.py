"""Round two (issue 27), the cases that need a run, a plugin or a file read back: a resumed run
stores what the original command would have, weights leave no foreign temp file, a refused
tracker leaves no half run, a plugin that raises SystemExit never ends ekd, the evaluation cache
detects edited entries, the ONNX file travels alone, a full disk is one sentence."""

from __future__ import annotations

import errno
import json
import pickle
import shutil
import textwrap
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
import torch
from rel_helpers import DATA, RUN, TEACHER, ekd_process, one_line_error, snapshot

from ekdcli.sdk import plugins
from ekdcli.store.atomic import atomic_write
from ekdcli.store.weights import load_tensors, read_metadata, save_tensors
from ekdcli.util.errors import JobError, UsageError

SMALL = ("--limit-train", "32", "--limit-test", "16", "--batch-size", "16", "--quiet")


# ------------------------------------------------------------------ item 1: resume forgets nothing
@pytest.mark.slow
def test_a_resumed_run_stores_its_weights_under_the_original_name_and_keep(store: Path, ekd: Any) -> None:
    """Killed after epoch 1 of 2 (the files a kill leaves), resumed with only the allowed changes:
    the weights go to --name's file with --keep last's epoch; the architecture's file is untouched."""
    good = (store / TEACHER).read_bytes()
    args = ("train", "--model", "tiny_cnn", *DATA, *SMALL, "--name", "mine", "--keep", "last")
    code, _, err = ekd(*args, "--epochs", "1", "--run-name", "r")
    assert code == 0, err
    run, mine = store / "runs" / "r", store / "models" / "fake" / "mine.safetensors"
    (run / "summary.json").unlink()  # as if killed before the run ended
    mine.unlink()
    code, _, err = ekd("train", "--resume", str(run), "--epochs", "2", "--device", "cpu", "--quiet")
    assert code == 0, err
    meta = read_metadata(mine)
    assert (meta["kept"], json.loads(meta["epoch"]), json.loads(meta["epochs"])) == ("last", 2, 2)
    assert meta["store_name"] == "mine"
    last, _ = load_tensors(run / "last.safetensors")
    stored, _ = load_tensors(mine)
    assert all(torch.equal(last[k], stored[k]) for k in last)  # the last epoch, not the best
    assert (store / TEACHER).read_bytes() == good  # the architecture's file was never touched
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


# ------------------------------------------------------------------ item 4: ~ is the home directory
def test_a_tilde_in_the_store_and_data_root_is_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ekdcli.config import resolve

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = resolve({"store": "~/x", "data_root": "~/d.npz", "data": "cifar100"})
    assert config.store_root() == tmp_path / "home" / "x"
    assert config.data_root == str(tmp_path / "home" / "d.npz")
    monkeypatch.setenv("EKD_HOME", "~/y")
    assert resolve({}).store_root() == tmp_path / "home" / "y"


# ------------------------------------------------------------------ item 5: leftovers
def test_weights_are_written_by_ekds_own_temp_file_not_safetensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """safetensors' save_file writes a ``.tmpXXXXXX`` of its own that no clean-up recognizes."""
    import safetensors.torch

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("safetensors.torch.save_file writes a temp file ekd cannot clean")

    monkeypatch.setattr(safetensors.torch, "save_file", refuse)
    target = tmp_path / "m.safetensors"
    save_tensors(target, {"w": torch.arange(6.0)}, {"top1": 0.5})
    tensors, meta = load_tensors(target)
    assert torch.equal(tensors["w"], torch.arange(6.0)) and meta["top1"] == "0.5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """``installed(name, module, source)``: an entry point in group ``ekd`` holding ``source``."""
    points: list[EntryPoint] = []
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(name: str, module: str, source: str) -> None:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        points.append(EntryPoint(name=name, value=module, group=plugins.ENTRY_POINT_GROUP))

    monkeypatch.setattr(plugins, "entry_points", lambda group=None: list(points) if group == "ekd" else [])
    plugins.reset_plugins()
    yield install
    plugins.reset_plugins()


REFUSING_TRACKER = """
    from ekdcli.sdk import Tracker, hookimpl

    class Refusing(Tracker):
        def start(self, run):
            raise RuntimeError("the server said no")

    @hookimpl
    def register_trackers(register):
        register("refusing", Refusing)
"""


def test_a_tracker_refusing_at_start_leaves_no_half_run_directory(
    installed: Any, ekd: Any, store: Path
) -> None:
    installed("ekd-rel-refusing", "ekd_rel_refusing", REFUSING_TRACKER)
    before = snapshot(store)
    code, _, err = ekd("train", "--model", "tiny_cnn", *DATA, *SMALL, "--epochs", "1", "--track", "refusing",
                       "--run-name", "half")  # fmt: skip
    one_line_error(code, err, 1, "tracker 'refusing' could not start", "the server said no")
    assert not (store / "runs" / "half").exists()  # no config.toml, environment.json, run.log
    assert snapshot(store) == before


# ------------------------------------------------------------------ item 11: plugins never brick ekd
EXITING = """
    raise SystemExit(3)
"""
EXITING_HOOK = """
    from ekdcli.sdk import hookimpl

    @hookimpl
    def register_models(register):
        raise SystemExit("bye")
"""
BASE_EXCEPTION = """
    class Strange(BaseException):
        pass

    raise Strange("not an Exception")
"""
EXITING_FACTORY = """
    import sys
    from ekdcli.sdk import hookimpl

    def build(**options):
        sys.exit(4)

    @hookimpl
    def register_models(register):
        register("rel_exit_net", build)
"""


@pytest.mark.parametrize(
    ("source", "said"), [(EXITING, "SystemExit: 3"), (BASE_EXCEPTION, "Strange: not an Exception")]
)
@pytest.mark.parametrize("command", [("--help",), ("list", "models", "tiny*"), ("train", "--help")])
def test_a_plugin_raising_on_import_never_ends_ekd(
    installed: Any, ekd: Any, source: str, said: str, command: tuple[str, ...]
) -> None:
    installed("ekd-rel-exit", "ekd_rel_exit", source)
    code, out, err = ekd(*command)
    assert code == 0 and out.strip(), (code, err)
    if command[0] == "list":  # the command that loads the plugins says which one failed, once
        assert "plugin 'ekd-rel-exit'" in err and said in err and "ekd continues without it" in err


def test_a_plugin_raising_system_exit_while_registering_is_skipped_with_a_warning(
    installed: Any, ekd: Any
) -> None:
    installed("ekd-rel-exit-hook", "ekd_rel_exit_hook", EXITING_HOOK)
    code, out, err = ekd("list", "models", "tiny*")
    assert code == 0 and "tiny_cnn" in out
    assert "plugin 'ekd-rel-exit-hook' failed while registering models (SystemExit: bye)" in err


def test_a_plugin_factory_calling_sys_exit_is_one_sentence(installed: Any, ekd: Any) -> None:
    installed("ekd-rel-exit-factory", "ekd_rel_exit_factory", EXITING_FACTORY)
    code, _, err = ekd("train", "--model", "rel_exit_net", *DATA, *SMALL, "--epochs", "1")
    one_line_error(
        code, err, 1, "plugin 'ekd-rel-exit-factory' failed to build model 'rel_exit_net' (SystemExit: 4)"
    )


# ------------------------------------------------------------------ item 6: the evaluation cache
def _evaluate(ekd: Any, store: Path) -> dict[str, Any]:
    code, out, err = ekd("evaluate", str(store / RUN), "--json", "--quiet")
    assert code == 0, err
    return json.loads(out)


def _entries(store: Path) -> list[Path]:
    return sorted((store / "cache" / "evaluations").glob("*.json"))


def _top1(result: dict[str, Any]) -> float:
    return float(result["targets"][0]["top1"])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda e: {**e, "result": {**e["result"], "top1": 0.987654}}, id="edited-top1"),
        pytest.param(lambda e: {**e, "digest": "0" * 64}, id="wrong-digest"),
        pytest.param(lambda e: {k: v for k, v in e.items() if k != "digest"}, id="no-digest"),
        pytest.param(lambda e: {**e, "key": "another"}, id="another-key"),
        pytest.param(None, id="truncated"),
    ],
)
def test_an_edited_or_damaged_cache_entry_is_measured_again(store: Path, ekd: Any, damage: Any) -> None:
    first = _evaluate(ekd, store)
    (entry,) = _entries(store)
    good = entry.read_text()
    if damage is None:
        entry.write_text(good[: len(good) // 2])
    else:
        entry.write_text(json.dumps(damage(json.loads(good))))
    second = _evaluate(ekd, store)
    assert second["cached"] == 0 and _top1(second) == _top1(first) != 0.987654  # measured again
    assert entry.read_text() == good  # and rewritten as it was
    assert _evaluate(ekd, store)["cached"] == 1


# ------------------------------------------------------------------ item 8: one ONNX file
@pytest.mark.slow
def test_the_onnx_file_loads_after_being_copied_alone(store: Path, ekd: Any, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime

    out = tmp_path / "export" / "r8.onnx"
    out.parent.mkdir()
    code, _, err = ekd("export", str(store / RUN), "--format", "onnx", "--out", str(out), "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == ["r8.onnx"]  # no side file of weights
    alone = tmp_path / "elsewhere" / "copied.onnx"
    alone.parent.mkdir()
    shutil.copy(out, alone)
    session = onnxruntime.InferenceSession(str(alone), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 3, 32, 32)
    logits = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    from ekdcli.jobs.build import open_trained

    model = open_trained(store / RUN / "best.safetensors").model.eval()
    with torch.no_grad():
        expected = model(images)
    assert logits.shape == (3, 10)
    assert float((torch.from_numpy(logits) - expected).abs().max()) < 1e-3


# ------------------------------------------------------------------ item 12: messages
def test_import_of_a_raw_pickle_is_one_line_without_torchs_warning(store: Path, tmp_path: Path) -> None:
    """In a real process (pytest would swallow the warning in-process): stderr is the refusal alone."""
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    process = ekd_process("import", str(raw), "--model", "tiny_cnn", *DATA, "--quiet", cwd=tmp_path)
    out, err = process.communicate(timeout=120)
    one_line_error(process.returncode, err, 2, "raw.pkl is not a readable PyTorch checkpoint")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_disk_while_saving_is_one_sentence_and_keeps_the_previous_file(
    tmp_path: Path, code: int
) -> None:
    target = tmp_path / "w.bin"
    target.write_bytes(b"previous")

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise OSError(code, "No space left on device" if code == errno.ENOSPC else "no room")

    with pytest.raises(JobError) as err:
        atomic_write(target, write)
    assert err.value.message.startswith(f"could not write {target} (")
    assert "the previous file is kept" in err.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"] and target.read_bytes() == b"previous"


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"which": "middle"}, "which weights of a run: 'best' or 'last', not 'middle'."),
        ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N, got 'tpu'."),
    ],
)
def test_load_model_refuses_bad_keywords_in_one_sentence(
    store: Path, keywords: dict[str, str], message: str
) -> None:
    import ekdcli

    with pytest.raises(UsageError) as err:
        ekdcli.load_model(store / RUN, **keywords)
    assert err.value.message == message
