"""``--print-config``: the resolved configuration with the source of each value, and nothing run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomllib


@pytest.mark.parametrize("command", ["train", "score", "partition", "distill", "bench"])
def test_print_config_shows_each_value_with_its_source_and_runs_nothing(
    command: str, tmp_path: Path, ekd: Any
) -> None:
    (tmp_path / "ekd.toml").write_text('lr = 0.2\n[energy]\npreset = "official"\n')
    code, out, err = ekd(command, "--print-config", "--set", "energy.t=3", "--seed", "7")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "lr = 0.2  # ekd.toml" in lines and "seed = 7  # flag" in lines
    assert 'method = "energy_kd"  # default' in lines and "# epochs (not set; default)" in lines
    energy = lines[lines.index("[energy]") + 1 :]
    assert 'preset = "official"  # ekd.toml' in energy and "t = 3  # flag" in energy
    parsed = tomllib.loads(out)  # it reads back as a project file
    assert (parsed["lr"], parsed["seed"], parsed["energy"]) == (0.2, 7, {"preset": "official", "t": 3})
    assert not (tmp_path / "store").exists()  # nothing ran
