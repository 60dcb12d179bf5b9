"""``ekd report``: a campaign's (or some runs') results as the paper lays them out.

Rows are methods and variants (method, energy preset, side or gradation, augmentation and rate),
columns teacher -> student pairs; each cell is the mean ± sample std over the runs that share a
configuration (the seeds), with their number.  The numbers are ``ekd evaluate``'s, computed by
its job (:func:`ekdcli.jobs.evaluate.run_evaluate`) on the same runs: the test top-1 of each
run's best (or last) weights, grouped by configuration.  With ``--paper TABLE`` each cell also
gets the paper's number for that row and pair (``ekdcli/campaign/paper_results.toml``) and the
difference.  Written as Markdown, CSV, JSON and a PNG (grouped bars, or lines over the rate for
rate sweeps) into the campaign's directory, and printed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ekdcli.campaign.campaign import Campaign, load
from ekdcli.campaign.paper import PaperTable, table
from ekdcli.campaign.report_eval import evaluate_in_parallel, measured_images, recorded_jobs, with_test_images
from ekdcli.config import Config
from ekdcli.jobs.common import open_store
from ekdcli.jobs.evaluate import run_evaluate
from ekdcli.jobs.evaluate_report import mean_std
from ekdcli.jobs.targets import expand_targets, named_run
from ekdcli.sdk.plugins import registry
from ekdcli.store import rundir
from ekdcli.store.atomic import atomic_write_json, atomic_write_text
from ekdcli.store.campaign import CampaignDir
from ekdcli.store.layout import Store
from ekdcli.util.errors import UsageError
from ekdcli.util.text import flatten, pct

DEFAULT_OUT = "ekd-report"


@dataclass
class ReportRequest:
    targets: list[str]
    paper: str | None = None
    which: str = "best"
    out: Path | None = None
    jobs: int | None = None  # runs evaluated at once (default: the campaign's --jobs)


@dataclass
class Sources:
    """What a report covers: finished run directories, and where the report goes."""

    runs: list[Path]
    skipped: list[str]  # runs not finished yet
    title: str
    out: Path
    definition: dict[str, Any] | None = None  # the campaign's, when a campaign is reported
    note: str = ""


# ------------------------------------------------------------------ what to report on
def resolve_sources(store: Store, request: ReportRequest) -> Sources:
    """Campaign names (their finished runs; one campaign's report goes into its directory) or runs;
    several campaigns are merged (a run repeated among them counts once)."""
    names = [t for t in request.targets if CampaignDir(store, t).exists() and not _names_a_path(t)]
    if names and len(request.targets) == 1:
        name = names[0]
        campaign = load(CampaignDir(store, name))
        done, pending = _campaign_runs(campaign)
        out = request.out or campaign.dir.path
        note = f"./{name} exists too; this is campaign {name} (give ./{name}/ for that folder's runs)"
        note = note if Path(name).exists() else ""
        return Sources(done, pending, f"campaign {campaign.name}", out, campaign.definition, note)
    runs: list[Path] = []
    skipped: list[str] = []
    for name in names:
        done, pending = _campaign_runs(load(CampaignDir(store, name)))
        runs += done
        skipped += [f"{name}.{run}" for run in pending]
    others = [t for t in request.targets if t not in names]
    runs += [_run_dir(store, ref) for ref in expand_targets(others)] if others else []
    finished = [r for r in runs if rundir.is_finished(r)]
    skipped += [str(r) for r in runs if not rundir.is_finished(r)]
    title = f"campaigns {', '.join(names)}" if names and not others else f"{len(runs)} run(s)"
    return Sources(finished, skipped, title, request.out or Path(DEFAULT_OUT))


def _campaign_runs(campaign: Campaign) -> tuple[list[Path], list[str]]:
    """A campaign's finished run directories, and the ids of its runs not finished yet."""
    dirs = [(run.id, campaign.dir.run_dir(run.id)) for run in campaign.runs]
    return [d for _, d in dirs if rundir.is_finished(d)], [i for i, d in dirs if not rundir.is_finished(d)]


def _names_a_path(ref: str) -> bool:
    """``./NAME``, ``NAME/`` or a run directory: a path, not a campaign's name."""
    return os.sep in ref or (os.altsep or os.sep) in ref or rundir.is_run_dir(Path(ref))


def _run_dir(store: Store, ref: str) -> Path:
    """A run directory given as a path or as a run name in the store (the one resolver's rule)."""
    found = named_run(store, ref)
    if found is not None:
        return found
    raise UsageError(
        f"{ref} is neither a campaign in {store.root} nor a run directory or run name; ekd report takes "
        "a campaign name or runs (see 'ekd sweep --status NAME')."
    )


# ------------------------------------------------------------------ rows and columns
ENERGY = "energy_"  # Energy KD/DKD are registered as energy_<method>: <method> with the energy rule


def _registered(method: str) -> bool:
    return method in {c.name for c in registry("distillers").list()}


def _default_rule(method: str) -> Any:
    return registry("distillers").get(method).info.get("temperature_rule") if _registered(method) else None


def full_method(method: str, rule: Any) -> tuple[str, str | None]:
    """A method as the paper names it, and the rule left to say: ``kd`` with the energy rule is
    ``energy_kd`` (the same run, bit for bit), ``energy_kd`` with the fixed rule is ``kd``; any
    other rule stays beside the method's base name (``kd``, ``gradation``)."""
    base = method.removeprefix(ENERGY)
    if base == method or not _registered(base):
        base = method  # not the energy variant of a registered method
    if rule == "energy" and _registered(ENERGY + base):
        return ENERGY + base, None
    if rule in (None, "fixed", _default_rule(base)):
        return base, None
    return base, str(rule)


def variant(summary: dict[str, Any]) -> dict[str, Any]:
    """The settings that make a run a row of the paper's tables, from its summary's objective."""
    objective = summary.get("objective") or {}
    distiller = objective.get("distiller") or {}
    method = distiller.get("method") or ("ce" if objective.get("objective") == "cross_entropy" else "?")
    method, rule = full_method(str(method), distiller.get("temperature_rule"))
    out: dict[str, Any] = {"method": method, "rule": rule}
    if "preset" in distiller:
        out["preset"] = distiller["preset"]
    if distiller.get("mode") == "gradation":
        out["segments"] = distiller.get("segments")
    elif "apply" in distiller:
        out["apply"] = distiller["apply"]
    augmentation = objective.get("augmentation")
    out["augment"] = augmentation.get("augment", "?") if augmentation else "none"
    if augmentation:
        out["rate"] = augmentation.get("rate")
        out["selection"] = augmentation.get("selection")
    return out


def row_label(v: dict[str, Any]) -> str:
    """``energy_kd (official)``, ``kd + he-cutmix 50%``, ``kd + cutmix 50% random``."""
    label = str(v["method"])
    if v.get("rule"):
        label += f", {v['rule']} rule"
    if v.get("preset"):
        label += f" ({v['preset']})"
    if v.get("apply") not in (None, "both"):
        label += f", {v['apply']} side"
    if v.get("segments"):
        label += f", {v['segments']} segments"
    if v.get("augment") not in (None, "none"):
        rate = v.get("rate")
        label += f" + {v['augment']}" + (f" {100 * rate:g}%" if isinstance(rate, (int, float)) else "")
        if v.get("selection") == "random":
            label += " random"
    return label


def pair_of(summary: dict[str, Any]) -> tuple[str, str, str]:
    """(teacher, student, data) of a run, from the metadata of its weights."""
    meta = summary.get("metadata") or {}
    return str(meta.get("teacher") or "-"), str(meta.get("arch") or "?"), str(meta.get("dataset") or "?")


# ------------------------------------------------------------------ the table
def data_setting(configuration: dict[str, Any], summary: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A run's dataset (canonical name) and its ``[data_options]``, from its configuration."""
    data = configuration.get("data") or (summary.get("metadata") or {}).get("dataset") or "?"
    options = configuration.get("data_options")
    return str(data), dict(options) if isinstance(options, dict) else {}


def dataset_defaults(data: str) -> dict[str, Any]:
    """A dataset's option defaults (``"exp|step"``, a list of choices: its first)."""
    try:
        declared = registry("datasets").get(data).info.get("options") or {}
    except UsageError:
        return {}
    return {k: v.split("|")[0] if isinstance(v, str) and "|" in v else v for k, v in declared.items()}


def _members(group: dict[str, Any], by_target: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The group's runs, each configuration and seed once (merged campaigns may hold a run twice),
    and the run directories left out as repeats."""
    kept: dict[int | str, dict[str, Any]] = {}
    repeats = []
    for target in group["targets"]:
        entry = by_target[target]
        seed = rundir.read_config(Path(entry["run_dir"])).get("seed", entry["run_dir"])
        if seed in kept:
            repeats.append(entry["run_dir"])
        else:
            kept[seed] = {**entry, "seed": seed}
    return list(kept.values()), repeats


def _cell(group: dict[str, Any], by_target: dict[str, Any]) -> dict[str, Any]:
    members, repeats = _members(group, by_target)
    summary = rundir.read_summary(Path(members[0]["run_dir"])) or {}
    v = variant(summary)
    teacher, student, data = pair_of(summary)
    runs = [
        {
            "run": m["run_dir"],
            "seed": m["seed"],
            "top1": m["top1"],
            "best_top1": (m.get("run") or {}).get("best_top1"),
        }
        for m in members
    ]
    return {
        "row": row_label(v),
        "variant": v,
        "pair": (teacher, student),
        "data": data,
        "setting": data_setting(group["configuration"], summary),
        "configuration": group["configuration"],
        "top1": mean_std([r["top1"] for r in runs]),
        "best_top1": mean_std([r["best_top1"] for r in runs]),
        "runs": [r["run"] for r in runs],
        "values": runs,
        "repeats": repeats,
    }


def build_table(evaluation: dict[str, Any], paper: PaperTable | None) -> dict[str, Any]:
    """Cells from ``ekd evaluate``'s groups, placed by row (variant) and column (pair)."""
    by_target = {t["target"]: t for t in evaluation["targets"]}
    cells = [_cell(group, by_target) for group in evaluation["groups"]]
    cells = _baselines_beside_their_pairs(cells)
    _disambiguate(cells)
    datasets = sorted({c["data"] for c in cells})
    for cell in cells:
        teacher, student = cell["pair"]
        cell["column"] = (f"{teacher}->{student}" if teacher != "-" else f"{student} (no teacher)") + (
            f" [{cell['data']}]" if len(datasets) > 1 else ""
        )
        cell.update(_paper_cell(cell, paper))
    return {
        "rows": _rows(cells),
        "columns": _columns(cells, paper),
        "cells": cells,
        "datasets": datasets,
        "notes": _notes(cells, paper),
    }


def _rows(cells: list[dict[str, Any]]) -> list[str]:
    """Rows in the paper's order where they are its rows, then in first-seen order."""
    rank: dict[str, int] = {}
    for cell in cells:
        index = cell.get("paper_row")
        if index is not None:
            rank[cell["row"]] = min(rank.get(cell["row"], index), index)
    seen = list(dict.fromkeys(c["row"] for c in cells))
    return sorted(seen, key=lambda row: (rank.get(row, len(seen) + 1000), seen.index(row)))


def _notes(cells: list[dict[str, Any]], paper: PaperTable | None) -> list[str]:
    """What a reader must know: runs counted once, pairs or data the paper's table does not have."""
    notes = []
    repeats = sum(len(c["repeats"]) for c in cells)
    if repeats:
        notes.append(
            f"{repeats} run(s) repeat another run's configuration and seed (merged campaigns) and are "
            "counted once: " + ", ".join(r for c in cells for r in c["repeats"][:3])
        )
    if paper is None:
        return notes
    other_data = sorted({c["data"] for c in cells if not c["paper_setting"]})
    if other_data:
        notes.append(
            f"runs on {', '.join(other_data)} are not compared: {paper.name} is on {paper.setting()}"
        )
    lacking = sorted({c["column"] for c in cells if c["paper_setting"] and c["pair"] not in paper.columns})
    if lacking:
        notes.append(
            f"the paper's {paper.name} has no column for {', '.join(lacking)}: no paper number there"
        )
    return notes


def _baselines_beside_their_pairs(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run without a teacher (the student's baseline, ``ce``) in the column of every pair with
    its student and data, as the paper lays its tables out; alone in a column only without one."""
    taught = [c for c in cells if c["pair"][0] != "-"]
    out = []  # the baselines first: the table's top rows, as in the paper
    for cell in (c for c in cells if c["pair"][0] == "-"):
        student = cell["pair"][1]
        teachers = dict.fromkeys(
            c["pair"][0] for c in taught if c["pair"][1] == student and c["data"] == cell["data"]
        )
        out += [{**cell, "pair": (teacher, student)} for teacher in teachers] or [cell]
    return out + taught


def _paper_cell(cell: dict[str, Any], paper: PaperTable | None) -> dict[str, Any]:
    """The paper's value (a fraction) and ours minus it, where the paper has one for the run's
    data (long-tail settings included), pair and full method."""
    if paper is None:
        return {"paper": None, "diff": None, "paper_setting": False, "paper_row": None}
    data, options = cell["setting"]
    same = paper.same_data(data, options, dataset_defaults(data))
    row = paper.row_index(cell["variant"]) if same else None
    value = paper.value(cell["variant"], cell["pair"]) if same else None
    if value is None:
        return {"paper": None, "diff": None, "paper_setting": same, "paper_row": row}
    mean = cell["top1"]["mean"]
    diff = None if mean is None else mean - value / 100
    return {"paper": value / 100, "diff": diff, "paper_setting": True, "paper_row": row}


def _columns(cells: list[dict[str, Any]], paper: PaperTable | None) -> list[str]:
    """Columns in the paper's order where it has them, then in first-seen order."""
    order = {pair: i for i, pair in enumerate(paper.columns)} if paper is not None else {}
    seen = list(dict.fromkeys((c["column"], c["pair"]) for c in cells))
    ranked = sorted(enumerate(seen), key=lambda item: (order.get(item[1][1], len(order)), item[0]))
    return [column for _, (column, _) in ranked]


def _flat(values: dict[str, Any]) -> dict[str, str]:
    """Nested settings as one level, each value as JSON text (comparable, printable)."""
    return {key: json.dumps(value, default=str) for key, value in flatten(values).items()}


def _disambiguate(cells: list[dict[str, Any]]) -> None:
    """Configurations that land in one cell (same variant and pair, other settings) become rows of
    their own, labelled with the settings that differ."""
    buckets: dict[tuple[str, Any, str], list[dict[str, Any]]] = {}
    for cell in cells:
        buckets.setdefault((cell["row"], cell["pair"], cell["data"]), []).append(cell)
    for same in buckets.values():
        if len(same) < 2:
            continue
        flats = [_flat(c["configuration"]) for c in same]
        keys = sorted(k for k in set().union(*flats) if len({f.get(k) for f in flats}) > 1)
        for cell, flat in zip(same, flats, strict=True):
            cell["row"] += " [" + ", ".join(f"{k}={flat.get(k, '-')}" for k in keys) + "]"


# ------------------------------------------------------------------ output
def cell_text(cell: dict[str, Any] | None) -> str:
    """``mean ± std (n)`` in percent."""
    if cell is None or cell["top1"]["mean"] is None:
        return "-"
    stats = cell["top1"]
    std = f" ± {pct(stats['std'])}" if stats["std"] is not None else ""
    return f"{pct(stats['mean'])}{std} (n={stats['n']})"


def markdown(result: dict[str, Any]) -> str:
    table_ = result["table"]
    paper = result.get("paper")
    lookup = {(c["row"], c["column"]): c for c in table_["cells"]}
    header = ["row"]
    for column in table_["columns"]:
        header += [column, "paper", "Δ"] if paper else [column]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
    for row in table_["rows"]:
        cells = [row]
        for column in table_["columns"]:
            cell = lookup.get((row, column))
            cells.append(cell_text(cell))
            if paper:
                cells += [pct(cell and cell["paper"]), pct(cell and cell["diff"], signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*_preamble(result), "", *lines, *_footer(result)]) + "\n"


def _preamble(result: dict[str, Any]) -> list[str]:
    lines = [
        f"# ekd report: {result['title']}",
        "",
        f"Test top-1 (%) of each run's {result['which']} weights, as `ekd evaluate` measures it, mean ± sample "
        f"std over the runs of a configuration (its seeds), n = runs; data: {', '.join(result['table']['datasets'])}.",
    ]
    if result.get("test_images"):
        lines.append(f"Test images: {result['test_images']}.")
    lines += [f"Note: {note}." for note in result.get("notes", [])]
    paper = result.get("paper")
    if paper:
        lines.append(
            f"Paper: {paper['title']} ('paper'); Δ = ours − paper, in points. The paper's runs are the full "
            "recipe on its data; a smaller run is not expected to reach them."
        )
        if paper["note"]:
            lines.append(f"Note: {paper['note']}.")
    lines += [f"Note: {note}." for note in result["table"].get("notes", [])]
    return lines


def _footer(result: dict[str, Any]) -> list[str]:
    if not result["skipped"]:
        return []
    shown = ", ".join(result["skipped"][:5]) + (" ..." if len(result["skipped"]) > 5 else "")
    return ["", f"Not finished, not in the table: {len(result['skipped'])} run(s) ({shown})."]


def to_csv(result: dict[str, Any]) -> str:
    """One line per cell; accuracies as fractions (machine-readable)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "column", "n", "mean", "std", "paper", "diff", "runs"])
    for c in result["table"]["cells"]:
        stats = c["top1"]
        writer.writerow(
            [
                c["row"],
                c["column"],
                stats["n"],
                stats["mean"],
                stats["std"],
                c["paper"],
                c["diff"],
                " ".join(c["runs"]),
            ]
        )
    return buffer.getvalue()


def keep_earlier(out: Path) -> Path | None:
    """Move an earlier report in ``out`` to ``out/reports/<its time>/`` (reports are never overwritten)."""
    earlier = [out / f"report.{suffix}" for suffix in ("md", "csv", "json", "png")]
    if not earlier[2].is_file():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(earlier[2].stat().st_mtime))
    folder = out / "reports" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    for path in (p for p in earlier if p.is_file()):
        os.replace(path, folder / path.name)
    return folder


def write_outputs(result: dict[str, Any], out: Path, layout: str) -> dict[str, str]:
    from ekdcli.campaign.report_figure import draw

    kept = keep_earlier(out)
    if kept is not None:
        result["earlier"] = str(kept)
    files = {
        "markdown": atomic_write_text(out / "report.md", markdown(result)),
        "csv": atomic_write_text(out / "report.csv", to_csv(result)),
        "png": draw(result, out / "report.png", layout),
    }
    files["json"] = out / "report.json"
    paths = {k: str(v) for k, v in files.items()}
    atomic_write_json(files["json"], {**result, "files": paths})
    return paths


def run_report(config: Config, request: ReportRequest) -> dict[str, Any]:
    """Evaluate the runs (``ekd evaluate``'s job), lay them out, write the four files."""
    paper = table(request.paper) if request.paper else None
    if paper is not None and paper.kind != "accuracy":
        raise UsageError(f"{paper.name} of the paper is {paper.note}.")
    store = open_store(config)
    sources = resolve_sources(store, request)
    if not sources.runs:
        raise UsageError(
            f"{sources.title} has no finished run yet ({len(sources.skipped)} not finished); "
            "report it when some have finished ('ekd sweep --status NAME' shows them)."
        )
    if paper is not None:
        check_paper_setting(paper, sources.runs)
    images = measured_images(sources.runs)
    config = with_test_images(config, images)
    jobs = request.jobs or recorded_jobs(sources.definition)
    evaluate_in_parallel(config, sources.runs, request.which, jobs, sources.out / "logs")
    evaluation = run_evaluate(config, [str(r) for r in sources.runs], "test", None, request.which).as_dict()
    result: dict[str, Any] = {
        "title": sources.title,
        "test_images": images.note,
        "notes": [sources.note] if sources.note else [],
        "which": request.which,
        "metric": "top1",
        "table": build_table(evaluation, paper),
        "skipped": sources.skipped,
        "paper": None if paper is None else {"table": paper.name, "title": paper.title, "note": paper.note},
    }
    layout = choose_layout(result, paper)
    result["layout"] = layout
    result["files"] = write_outputs(result, sources.out, layout)
    return result


def _canonical_data(name: Any) -> str:
    try:
        return registry("datasets").get(str(name)).name
    except UsageError:
        return str(name)


def check_paper_setting(paper: PaperTable, runs: list[Path]) -> None:
    """Refuse, before any evaluation, a paper table whose setting no run has: other data (or
    long-tail settings), or a rate sweep (Figure 2) among runs that sweep no rate."""
    configs = [rundir.read_config(run) for run in runs]
    settings = [(_canonical_data(c.get("data", "?")), dict(c.get("data_options") or {})) for c in configs]
    if not any(paper.same_data(data, options, dataset_defaults(data)) for data, options in settings):
        have = ", ".join(sorted({data + (f" {options}" if options else "") for data, options in settings}))
        raise UsageError(
            f"{paper.name} of the paper is on {paper.setting()}; none of the {len(runs)} run(s) is (they are "
            f"on {have}), so there is nothing to compare: report without --paper, or choose another table."
        )
    if paper.layout == "lines":
        rates = {
            (c.get("augment"), c.get("rate"))
            for c in configs
            if c.get("augment") and c.get("rate") is not None
        }
        if len(rates) < 2:
            raise UsageError(
                f"{paper.name} of the paper plots accuracy over the rate r; these runs sweep no rate "
                "(run the campaign with --grid rate=0.1,0.2,0.3 and an augmentation), or report without --paper."
            )


def choose_layout(result: dict[str, Any], paper: PaperTable | None) -> str:
    """``lines`` for rate sweeps (the paper's Figure 2, or three or more rates of one augmentation)."""
    if paper is not None and paper.layout == "lines":
        return "lines"
    rates: dict[str, set[float]] = {}
    for cell in result["table"]["cells"]:
        v = cell["variant"]
        if v.get("augment") not in (None, "none") and isinstance(v.get("rate"), (int, float)):
            rates.setdefault(str(v["augment"]), set()).add(float(v["rate"]))
    return "lines" if rates and max(len(r) for r in rates.values()) >= 3 else "bars"
