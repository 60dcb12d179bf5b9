"""A campaign's definition and its runs: config files x grid values x seeds, each run with a
deterministic, readable name (``<config stem>[-<key><value>...]-seed<S>``).

The definition is recorded once in the store (:mod:`ekdcli.store.campaign`) together with a copy
of each config file; the runs read those copies, so editing a file later cannot change a campaign
half-way (a sweep that names the edited file is refused instead).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ekdcli.config import Config, parse_assignments, read_toml, resolve, validate
from ekdcli.store.campaign import CampaignDir
from ekdcli.store.layout import Store, safe_name
from ekdcli.util.errors import UsageError

FORMAT = 1
TEACHER_STEM = "_teacher"  # the campaign's copy of --teacher-config: configs/_teacher.toml


@dataclass(frozen=True)
class CampaignRun:
    """One run of a campaign."""

    id: str  # unique in the campaign; its run directory is <store>/runs/<campaign>.<id>
    stem: str  # of its config file
    config: Path  # the campaign's copy of that file
    overrides: tuple[tuple[str, str], ...]  # (KEY, VALUE text) of the grid, in grid order
    seed: int


@dataclass
class Campaign:
    """A campaign's directory, definition and runs (in execution order: seed by seed)."""

    dir: CampaignDir
    definition: dict[str, Any]
    runs: list[CampaignRun]
    teacher_config: Path | None = None  # --teacher-config: the recipe of the teachers it trains

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def nproc(self) -> int:
        """Data-parallel processes of each run (``--nproc``; GPUs where there are GPUs)."""
        return int(self.definition.get("nproc") or 1)

    @property
    def cwd(self) -> str | None:
        """The directory the campaign was started from (relative paths in its configs mean it)."""
        cwd = self.definition.get("cwd")
        return cwd if isinstance(cwd, str) else None

    def set_args(self, run: CampaignRun) -> list[str]:
        """``--set`` arguments of a run: the campaign's overrides, then the run's grid values."""
        pairs = [*self.definition.get("set", []), *(f"{k}={v}" for k, v in run.overrides)]
        return [arg for pair in pairs for arg in ("--set", pair)]

    def run_name(self, run: CampaignRun) -> str:
        return f"{self.name}.{run.id}"

    def config_of(self, run: CampaignRun) -> Config:
        """The run's resolved configuration (validates every key and type of file and overrides)."""
        pairs = [*self.definition.get("set", []), *(f"{k}={v}" for k, v in run.overrides)]
        flags = parse_assignments(pairs)
        flags.update(seed=run.seed, store=str(self.dir.store.root), run_name=self.run_name(run))
        with _in_dir(self.cwd):
            return resolve(flags, run.config)


class _in_dir:
    """Resolve relative paths as the campaign's runs will (from the directory it was started in)."""

    def __init__(self, cwd: str | None) -> None:
        self.cwd = cwd if cwd and Path(cwd).is_dir() else None
        self.previous = ""

    def __enter__(self) -> None:
        if self.cwd:
            self.previous = os.getcwd()
            os.chdir(self.cwd)

    def __exit__(self, *exc: Any) -> None:
        if self.cwd:
            os.chdir(self.previous)


# ------------------------------------------------------------------ parsing the command line
def parse_seeds(text: str | None) -> list[int] | None:
    """``"0,1,2"`` -> ``[0, 1, 2]``; None keeps each config's own seed."""
    if text is None:
        return None
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UsageError(f"--seeds wants comma-separated whole numbers such as 0,1,2, not {text!r}.")
        if int(part) not in seeds:
            seeds.append(int(part))
    return seeds


def split_values(text: str) -> list[str]:
    """Comma-separated values, commas inside brackets or quotes kept (``[1,2],[3,4]`` is two values)."""
    values, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return values


def parse_grid(items: list[str] | tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """``--grid KEY=V1,V2`` (repeatable) -> ``[(KEY, [V1, V2]), ...]``, each checked as ``--set`` would."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        values = split_values(text) if sep else []
        if not key or not values or not all(values):
            raise UsageError(f"--grid wants KEY=V1,V2,... (e.g. method=kd,energy_kd), not {item!r}.")
        if key in (k for k, _ in grid):
            raise UsageError(f"--grid names {key!r} twice; give all its values in one --grid {key}=V1,V2.")
        if len(set(values)) < len(values):
            raise UsageError(f"--grid {item}: a value is repeated; list each value once.")
        for value in values:
            validate(parse_assignments([f"{key}={value}"]), f"--grid {item}")
        grid.append((key, values))
    return grid


# ------------------------------------------------------------------ the definition
def default_name(configs: list[Path]) -> str:
    """One config: its stem; several in one folder: the folder's name; else ``--name`` is needed."""
    if len(configs) == 1:
        return configs[0].stem
    folders = {c.resolve().parent for c in configs}
    if len(folders) == 1:
        return folders.pop().name
    raise UsageError("the configs come from several folders; name the campaign with --name NAME.")


def define(
    store: Store,
    configs: list[str],
    seeds: list[int] | None,
    grid: list[tuple[str, list[str]]],
    sets: list[str],
    name: str | None,
    teacher_config: str | None = None,
) -> tuple[CampaignDir, dict[str, Any], dict[str, str]]:
    """The campaign the command line describes: its directory, definition and config texts by stem."""
    paths = [Path(c).expanduser() for c in configs]
    texts: dict[str, str] = {}
    entries = [_entry(path, texts) for path in paths]
    teacher = _entry(Path(teacher_config).expanduser(), texts, TEACHER_STEM) if teacher_config else None
    parse_assignments(sets)  # KEY=VALUE shape, before anything is written
    campaign_name = name or default_name(paths)
    if safe_name(campaign_name) != campaign_name:
        raise UsageError(
            f"campaign name {campaign_name!r} has characters a directory name cannot; use letters, "
            "digits, '-', '_' and '.'."
        )
    definition = {
        "format": FORMAT,
        "name": campaign_name,
        "configs": entries,
        "seeds": seeds,
        "grid": [[key, values] for key, values in grid],
        "set": list(sets),
        "teacher_config": teacher,
        "cwd": os.getcwd(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    return CampaignDir(store, campaign_name), definition, texts


def _entry(path: Path, texts: dict[str, str], stem: str | None = None) -> dict[str, str]:
    """A config file's record in the definition (its text kept in ``texts`` by stem)."""
    read_toml(path)  # exists and parses, else one sentence naming it
    stem = stem or path.stem
    if stem in texts:
        raise UsageError(f"two configs are named {stem!r} ({path}); rename one, stems name the runs.")
    texts[stem] = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(texts[stem].encode()).hexdigest()
    return {"stem": stem, "source": str(path.resolve()), "sha256": digest}


def differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What makes two definitions different campaigns (their folders and dates do not)."""
    out = []
    old_configs = {c["stem"]: c["sha256"] for c in stored.get("configs", [])}
    new_configs = {c["stem"]: c["sha256"] for c in new.get("configs", [])}
    if set(old_configs) != set(new_configs):
        out.append("other config files")
    else:
        out += [f"{stem}.toml changed" for stem in new_configs if new_configs[stem] != old_configs[stem]]
    if (stored.get("teacher_config") or {}).get("sha256") != (new.get("teacher_config") or {}).get("sha256"):
        out.append("another --teacher-config")
    if stored.get("nproc", 1) != new.get("nproc", 1):
        out.append("another --nproc")
    for key, what in (("seeds", "--seeds"), ("grid", "--grid"), ("set", "--set")):
        if stored.get(key) != new.get(key):
            out.append(f"other {what}")
    return out


def growth(stored: dict[str, Any], new: dict[str, Any]) -> list[str] | None:
    """What ``new`` adds to ``stored`` when it only adds (configs, seeds, grid values), else None."""
    old_configs = {c["stem"]: c["sha256"] for c in stored.get("configs", [])}
    new_configs = {c["stem"]: c["sha256"] for c in new.get("configs", [])}
    old_grid, new_grid = dict(stored.get("grid", [])), dict(new.get("grid", []))
    old_seeds, new_seeds = stored.get("seeds"), new.get("seeds")
    same = (
        all(new_configs.get(stem) == digest for stem, digest in old_configs.items())
        and list(old_grid) == list(new_grid)
        and all(set(values) <= set(new_grid[key]) for key, values in old_grid.items())
        and (old_seeds == new_seeds or (old_seeds is not None and new_seeds is not None))
        and set(old_seeds or []) <= set(new_seeds or [])
        and stored.get("set") == new.get("set")
        and stored.get("nproc", 1) == new.get("nproc", 1)
        and (stored.get("teacher_config") or {}).get("sha256")
        == (new.get("teacher_config") or {}).get("sha256")
    )
    if not same:
        return None
    added = [f"config {stem}" for stem in new_configs if stem not in old_configs]
    added += [f"seed {seed}" for seed in new_seeds or [] if seed not in (old_seeds or [])]
    added += [f"{key}={v}" for key, values in new_grid.items() for v in values if v not in old_grid[key]]
    return added


def load(
    campaign_dir: CampaignDir, definition: dict[str, Any] | None = None, sources: bool = False
) -> Campaign:
    """The campaign with its runs expanded (from the stored definition unless one is given); the
    runs read the campaign's copies of the configs, or with ``sources`` the files themselves (a
    campaign not written yet: ``--dry-run``)."""
    definition = definition if definition is not None else campaign_dir.read_definition()
    if definition.get("format") != FORMAT:
        raise UsageError(
            f"campaign {campaign_dir.name!r} was written by another version of ekd (format "
            f"{definition.get('format')!r}); run it with that version or start a new campaign."
        )
    grid = [(str(key), [str(v) for v in values]) for key, values in definition.get("grid", [])]
    seeds = definition.get("seeds")
    combos = list(itertools.product(*[[(key, v) for v in values] for key, values in grid]))
    ordered: list[tuple[int, int, int, CampaignRun]] = []
    for index, entry in enumerate(definition.get("configs", [])):
        stem = entry["stem"]
        config = Path(entry["source"]) if sources else campaign_dir.config_path(stem)
        own = seeds if seeds is not None else [_own_seed(config, definition)]
        for s_index, seed in enumerate(own):
            for c_index, combo in enumerate(combos):
                run_id = _run_id(stem, combo, seed)
                ordered.append(
                    (s_index, index, c_index, CampaignRun(run_id, stem, config, tuple(combo), seed))
                )
    runs = [run for *_, run in sorted(ordered, key=lambda item: item[:3])]
    _check_unique(runs)
    teacher = definition.get("teacher_config")
    teacher_path = None
    if teacher:
        teacher_path = Path(teacher["source"]) if sources else campaign_dir.config_path(TEACHER_STEM)
    return Campaign(campaign_dir, definition, runs, teacher_path)


def _own_seed(config: Path, definition: dict[str, Any]) -> int:
    """A config's own seed (with the campaign's --set), for campaigns without --seeds."""
    return resolve(parse_assignments(definition.get("set", [])), config).seed


def _label(key: str, value: str) -> str:
    """``rate`` ``0.5`` -> ``rate0.5``; ``method`` ``kd`` -> ``method-kd`` (the key's last part)."""
    leaf = key.split(".")[-1]
    text = safe_name(value.strip("\"'")) if value.strip("\"'") else "empty"
    return f"{leaf}{text}" if text[0].isdigit() else f"{leaf}-{text}"


def _run_id(stem: str, combo: tuple[tuple[str, str], ...], seed: int) -> str:
    return safe_name("-".join([stem, *(_label(k, v) for k, v in combo), f"seed{seed}"]))


def _check_unique(runs: list[CampaignRun]) -> None:
    seen: dict[str, CampaignRun] = {}
    for run in runs:
        if run.id in seen:
            raise UsageError(
                f"two runs of the campaign would both be named {run.id!r}; give the configs or grid "
                "values names that differ in letters or digits."
            )
        seen[run.id] = run
