"""Configuration precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from ekdcli.config import Config, parse_assignments, read_toml, resolve
from ekdcli.util.errors import UsageError


def test_defaults_then_file_then_flags(tmp_path: Path) -> None:
    (tmp_path / "ekd.toml").write_text(
        'data = "cifar100"\nepochs = 5\nlr = 0.1\n[energy]\npreset = "official"\n'
    )
    config = resolve({"epochs": 7, "seed": None, "energy": {"t_mid": 3.0}}, cwd=tmp_path)
    assert config.data == "cifar100"  # file over default
    assert config.epochs == 7  # flag over file
    assert config.lr == 0.1 and config.seed == 0  # None flags do not override
    assert config.energy == {"preset": "official", "t_mid": 3.0}  # flag tables extend file tables
    assert config.sources["data"].endswith("ekd.toml") and config.sources["epochs"] == "flag"
    assert resolve({}, cwd=tmp_path / "elsewhere").data == Config().data


def test_explicit_config_file_wins_over_ekd_toml(tmp_path: Path) -> None:
    (tmp_path / "ekd.toml").write_text('data = "cifar100"\n')
    other = tmp_path / "other.toml"
    other.write_text('data = "cifar10"\n')
    assert resolve({}, config_file=other, cwd=tmp_path).data == "cifar10"


def test_unknown_keys_and_wrong_types_are_listed_together(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('epoch = 3\nbatch_size = "big"\nlr = 1\nquiet = 1\nteachr = "x"\n')
    with pytest.raises(UsageError) as err:
        resolve({}, config_file=bad)
    message = err.value.message
    assert str(bad) in message
    assert "unknown key 'epoch'" in message and "unknown key 'teachr'" in message
    assert "'batch_size' must be an integer" in message and "'quiet' must be true or false" in message
    assert "'lr'" not in message  # an integer is a fine float
    assert err.value.exit_code == 2


def test_bad_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("data = \n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        read_toml(broken)
    with pytest.raises(UsageError, match="does not exist"):
        resolve({}, config_file=tmp_path / "missing.toml")


def test_resolved_config_round_trips_through_toml(tmp_path: Path) -> None:
    config = resolve({"data": "cifar100", "rate": 0.5, "energy": {"preset": "paper", "t_plus": 2.0}})
    path = tmp_path / "resolved.toml"
    path.write_text(config.to_toml())
    again = resolve({}, config_file=path)
    assert again.as_dict() == config.as_dict()


def test_store_root_env_and_explicit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EKD_HOME", str(tmp_path / "home"))
    assert resolve({}).store_root() == tmp_path / "home"
    assert resolve({"store": "s"}).store_root() == Path("s")


def test_set_values_are_read_as_toml_or_text() -> None:
    parsed = parse_assignments(
        [
            "energy.t_low_energy=2",
            "energy.preset=official",
            "train.milestones=[150, 180]",
            "teacher_cache=true",
            'run_name="a b"',
            "data_options.imbalance_factor = 0.01",
        ]
    )
    assert parsed == {
        "energy": {"t_low_energy": 2, "preset": "official"},
        "train": {"milestones": [150, 180]},
        "teacher_cache": True,
        "run_name": "a b",
        "data_options": {"imbalance_factor": 0.01},
    }
    for bad, message in (
        ("energy", "KEY=VALUE"),
        ("=3", "KEY=VALUE"),
        ("a.b.c=1", "KEY=VALUE"),
        ("energy.=1", "KEY=VALUE"),
        ("nosuch.key=1", "'nosuch' is not an option table; the tables are train"),
    ):
        with pytest.raises(UsageError, match=message):
            parse_assignments([bad])


def test_set_goes_below_named_flags_and_above_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ekdcli.cli.options import build_config

    monkeypatch.chdir(tmp_path)  # no ./ekd.toml but the one named

    (tmp_path / "cfg.toml").write_text('epochs = 5\nseed = 3\n[energy]\npreset = "paper"\nt_plus = 1.0\n')
    params = {
        "config_file": str(tmp_path / "cfg.toml"),
        "set_values": ("epochs=7", "seed=9", "energy.preset=official", "energy.segments=10"),
        "seed": 11,  # a named flag wins over --set
        "epochs": None,  # not given: --set applies
    }
    config = build_config(params, tables={"energy": {"segments": 4, "source": None}})
    assert config.epochs == 7
    assert config.seed == 11
    # the file's table keys stay unless overridden; --set adds; the named table option wins
    assert config.energy == {"preset": "official", "t_plus": 1.0, "segments": 4}
    assert config.sources["epochs"] == "flag"
    with pytest.raises(UsageError, match="'epochs' must be an integer"):
        build_config({"set_values": ("epochs=many",)})


def test_every_key_and_table_is_in_the_configuration_reference() -> None:
    import dataclasses

    from ekdcli.config import OPTION_TABLES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    keys = [f.name for f in dataclasses.fields(Config) if f.name != "sources" and f.name not in OPTION_TABLES]
    missing = [key for key in keys if f"| `{key}` |" not in doc]
    assert not missing, f"docs/configuration.md lacks a row for {missing}"
    missing_tables = [table for table in OPTION_TABLES if f"| `[{table}]` |" not in doc]
    assert not missing_tables, f"docs/configuration.md lacks the tables {missing_tables}"
    # and the documented defaults of plain scalars are the real ones
    for key in ("store", "data", "method", "energy_temperature", "recipe", "seed", "device", "precision"):
        default = getattr(Config(), key)
        assert f"| `{key}` | `--{key.replace('_', '-')}` | `{default}` |" in doc, key


def test_a_table_of_the_wrong_type_is_named_as_a_table(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("energy = 3\nmodel = 5\n")
    with pytest.raises(UsageError) as err:
        resolve({}, config_file=bad)
    assert err.value.message == (
        f"{bad}: 'energy' must be a table, not 3 (line 1); 'model' must be a string, not 5 (line 2). "
        "See 'ekd <command> --help' for the keys."
    )


def test_precedence_through_the_command_line(tmp_path: Path, ekd) -> None:
    # Each unknown model name says which source won: `ekd train` resolves --model before any data.
    (tmp_path / "ekd.toml").write_text('model = "from_ekd_toml"\n')
    (tmp_path / "other.toml").write_text('model = "from_other_toml"\n')
    for args, winner in (
        ((), "from_ekd_toml"),  # ./ekd.toml over the default
        (("--config", "other.toml"), "from_other_toml"),  # --config replaces ./ekd.toml
        (("--set", "model=from_set"), "from_set"),  # --set over the file
        (("--set", "model=from_set", "--model", "from_flag"), "from_flag"),  # a named flag over all
        (("--config", "other.toml", "--model", "from_flag"), "from_flag"),
    ):
        code, out, err = ekd("train", *args)
        assert (code, out) == (2, ""), args
        assert err.startswith(f"error: unknown model '{winner}'."), (args, err)
    (tmp_path / "ekd.toml").write_text('model = "from_ekd_toml"\nepoch = 1\n')
    code, _, err = ekd("train", "--model", "resnet8")  # a bad ./ekd.toml is reported even with flags
    assert code == 2 and err == (
        "error: ekd.toml: unknown key 'epoch' (line 2). See 'ekd <command> --help' for the keys.\n"
    )


def test_bad_option_table_keys_name_the_file_that_set_them(tmp_path: Path, ekd) -> None:
    # A table's keys are checked by the plugin that reads them; the error still names the file.
    pair = ("--teacher", "resnet8", "--student", "resnet8", "--data", "fake")
    cases = (
        ("[distiller]\ntemp = 4\n", "distill", ("--method", "kd", *pair)),
        ("[energy]\npreset = 'nope'\n", "distill", ("--method", "energy_kd", *pair)),
        ("[augmentation]\nalpha = 'x'\n", "distill", ("--method", "kd", "--augment", "he-cutmix", *pair)),
        # a key no dataset takes (another dataset's key, e.g. digits' size, is a note: test_project_file.py)
        ("[data_options]\nsizes = 8\n", "train", ("--model", "resnet8", "--data", "fake")),
    )
    for text, command, args in cases:
        (tmp_path / "opts.toml").write_text(text)
        code, out, err = ekd(command, "--config", "opts.toml", *args)
        assert code == 2 and out == "", (text, err)
        assert err.startswith("error: ") and err.rstrip().endswith("(set in opts.toml line 2)."), (text, err)
        assert err.count("\n") == 1, err
        assert not (tmp_path / "store" / "runs").exists(), text
    # The same bad key given on the command line names no file.
    code, _, err = ekd("distill", "--method", "kd", *pair, "--set", "distiller.temp=4")
    assert code == 2 and "set in" not in err and "'temp'" in err
