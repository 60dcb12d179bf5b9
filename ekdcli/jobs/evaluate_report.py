"""The report of ``ekd evaluate``: targets of one configuration grouped with mean ± sample std,
and the text tables (``--json`` prints the same numbers as data)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ekdcli.util.text import finite, flatten, pct

SHOWN_CLASSES = 3  # worst and best classes in the text output


# ------------------------------------------------------------------ groups
def mean_std(values: list[Any]) -> dict[str, Any]:
    """Mean and sample standard deviation (``None`` with fewer than two values) of finite values."""
    numbers = [float(v) for v in values if finite(v)]
    return {
        "mean": statistics.fmean(numbers) if numbers else None,
        "std": statistics.stdev(numbers) if len(numbers) > 1 else None,
        "n": len(numbers),
    }


def _differing(configs: list[dict[str, Any]]) -> list[str]:
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1]


def group_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Targets of the same configuration together, with mean ± std of their numbers, in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result["configuration"], []).append(result)
    out = []
    for key, members in groups.items():
        runs = [m["run"] or {} for m in members]
        out.append(
            {
                "label": members[0]["label"],
                "configuration": json.loads(key),
                "n": len(members),
                "targets": [m["target"] for m in members],
                "best_top1": mean_std([r.get("best_top1") for r in runs]),
                "last_top1": mean_std([r.get("last_top1") for r in runs]),
                "top1": mean_std([m["top1"] for m in members]),
                "ece": mean_std([m["ece"] for m in members]),
            }
        )
    # Groups sharing a label get the settings that tell them apart.
    by_label: dict[str, list[dict[str, Any]]] = {}
    for group in out:
        by_label.setdefault(group["label"], []).append(group)
    for same in by_label.values():
        if len(same) > 1:
            keys = _differing([g["configuration"] for g in same])
            for group in same:
                flat = flatten(group["configuration"])
                extra = ", ".join(f"{k}={flat.get(k)}" for k in keys)
                group["label"] = f"{group['label']} [{extra}]"
    return out


# ------------------------------------------------------------------ text
def _cell(stats: dict[str, Any], scale: float = 100.0) -> str:
    """``mean ± std`` of fractions, in percent; a single value (no std) alone."""
    if stats["mean"] is None:
        return "-"
    if stats["std"] is None:
        return f"{stats['mean'] * scale:.2f}"
    return f"{stats['mean'] * scale:.2f} ± {stats['std'] * scale:.2f}"


def display_names(results: list[dict[str, Any]]) -> tuple[list[str], str | None]:
    """Short row names and the folder they are in: when every run lies in one folder, a run is named
    by its directory name (others stay as given); otherwise every target as given, and no folder."""
    as_given = [r["target"] for r in results]
    runs = [Path(r["run_dir"]) for r in results if r["kind"] == "run" and r["run_dir"]]
    folders = {str(run.parent) for run in runs}
    if len(folders) != 1:
        return as_given, None
    names = [Path(r["run_dir"]).name if r["kind"] == "run" and r["run_dir"] else r["target"] for r in results]
    if len(set(names)) < len(names) or names == as_given:
        return as_given, None
    return names, folders.pop()


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        _line(header, widths),
        _line(["-" * w for w in widths], widths),
        *(_line(r, widths) for r in rows),
    ]


def _line(cells: list[str], widths: list[int]) -> str:
    first = cells[0].ljust(widths[0])
    return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]).rstrip()


# ------------------------------------------------------------------ the per-target table
TARGET_COLUMNS = ["top-1", "top-5", "NLL", "ECE%", "best", "last"]
GROUP_COLUMNS = ["low", "others", "high"]
NUMBER_WIDTH = 7  # "100.00", "12.3456": every number fits, so rows can be printed as they come


def target_header(groups: bool, data: bool = False) -> list[str]:
    """``data``: a data column, for targets that do not all use the same data."""
    return ["target", *(["data"] if data else []), *TARGET_COLUMNS, *(GROUP_COLUMNS if groups else [])]


def mixed_data(datas: list[Any]) -> bool:
    """Whether the targets use different data (then the table shows each one's)."""
    return len(set(datas)) > 1


def target_cells(result: dict[str, Any], name: str, groups: bool, data: bool = False) -> list[str]:
    """One target's row: its data (when ``data``), test metrics, the run's best/last, and the energy
    groups when asked."""
    run = result["run"] or {}
    cells = [
        name,
        *([str(result["data"])] if data else []),
        pct(result["top1"]),
        pct(result["top5"]),
        f"{result['nll']:.4f}" if finite(result["nll"]) else "-",
        pct(result["ece"]),
        pct(run.get("best_top1")),
        pct(run.get("last_top1")),
    ]
    if groups:
        energy = result["energy_groups"]
        found = energy.get("groups", {}) if energy.get("available") else {}
        cells += [pct(found.get(g, {}).get("accuracy")) for g in GROUP_COLUMNS]
    return cells


class RowPrinter:
    """The per-target table printed row by row, each as soon as its target is evaluated."""

    def __init__(
        self, names: list[str], folder: str | None, groups: bool, say: Any, datas: list[str] | None = None
    ) -> None:
        self.groups, self.say = groups, say
        self.data = mixed_data(datas or [])
        header = target_header(groups, self.data)
        self.widths = [max(len(header[0]), *map(len, names))] + [
            max(len(h), NUMBER_WIDTH) for h in header[1:]
        ]
        lines = [f"runs in {folder}:"] if folder else []
        self.say(
            "\n".join(
                [*lines, _line(header, self.widths), _line(["-" * w for w in self.widths], self.widths)]
            )
        )

    def row(self, result: dict[str, Any], name: str) -> None:
        self.say(_line(target_cells(result, name, self.groups, self.data), self.widths))


def _classes_line(result: dict[str, Any]) -> list[str]:
    acc = result["per_class_accuracy"]
    names = result["class_names"]
    ranked = sorted((a, i) for i, a in enumerate(acc) if a is not None)
    if len(ranked) < 2:
        return []
    k = min(SHOWN_CLASSES, len(ranked) // 2)

    def show(items: list[tuple[float, int]]) -> str:
        return ", ".join(f"{names[i]} {100 * a:.1f}%" for a, i in items)

    return [f"  worst classes: {show(ranked[:k])}", f"  best classes:  {show(ranked[::-1][:k])}"]


def _energy_lines(energy: dict[str, Any]) -> list[str]:
    if not energy.get("requested", True):  # not asked for (--groups)
        return []
    if not energy.get("available"):
        return [f"  energy groups: {energy.get('reason', 'not available')}"]
    g = energy["groups"]
    cells = "  ".join(
        f"{name} {pct(g[name]['accuracy'])}% "
        f"(n={g[name]['count']}, teacher {pct(g[name]['teacher_accuracy'])}%)"
        for name in ("low", "others", "high")
    )
    return [
        f"  train accuracy by energy ({energy['samples']:,} training images, rate {energy['rate']:g}, "
        f"{energy['low_rule']} rule): {cells}"
    ]


def format_target(result: dict[str, Any]) -> str:
    """The text block of one target."""
    which = f" {result['which']}" if result["which"] else ""
    lines = [
        f"{result['target']}: {result['label']}{which} weights on {result['data']} {result['split']} "
        f"({result['n']} images, {result['precision']})",
        f"  top-1 {pct(result['top1'])}%  top-5 {pct(result['top5'])}%  NLL {result['nll']:.4f}  "
        f"ECE {pct(result['ece'])}%",
    ]
    run = result["run"]
    if run is not None:
        planned = f" of {run['epochs_planned']}" if run["epochs_planned"] else ""
        state = "" if run["finished"] else " (unfinished)"
        lines.append(
            f"  run: best top-1 {pct(run['best_top1'])}% (epoch {run['best_epoch'] or '-'}), "
            f"last {pct(run['last_top1'])}% (epoch {run['epochs_done']}{planned}){state}"
        )
    lines += _classes_line(result)
    if result["long_tail"]:
        lt = result["long_tail"]
        lines.append(
            "  long-tailed: "
            + "  ".join(f"{g}-shot {pct(lt[g]['accuracy'])}% ({lt[g]['classes']} classes)" for g in lt)
        )
    lines += _energy_lines(result["energy_groups"])
    return "\n".join(lines)


def format_evaluation(payload: dict[str, Any], rows: bool = True) -> str:
    """One block for one target; for several, the per-target table (``rows=False``: left out, as it
    was printed row by row) and the per-configuration table."""
    results = payload["targets"]
    if not results:
        return "no target was evaluated."
    if len(results) == 1 and payload.get("requested", 1) == 1:
        return format_target(results[0])
    groups = payload.get("energy_groups", False)
    names, folder = display_names(results)
    lines = []
    if rows:
        lines += [f"runs in {folder}:"] if folder else []
        data = mixed_data([r["data"] for r in results])
        lines += _table(
            target_header(groups, data),
            [target_cells(r, n, groups, data) for r, n in zip(results, names, strict=True)],
        )
    lines += _footnote(payload, groups)
    which = payload["which"]
    group_rows = [
        [
            g["label"],
            str(g["n"]),
            _cell(g["best_top1"]),
            _cell(g["last_top1"]),
            _cell(g["top1"]),
            _cell(g["ece"]),
        ]
        for g in group_results_sorted(payload["groups"])
    ]
    lines += [
        "",
        f"by configuration (mean ± sample std over runs; {payload['split']} top-1 of the {which} weights):",
    ]
    lines += _table(
        ["configuration", "n", "best top-1", "last top-1", f"{payload['split']} top-1", "ECE%"], group_rows
    )
    return "\n".join(lines)


def _footnote(payload: dict[str, Any], groups: bool) -> list[str]:
    """What the columns of the per-target table measure, and on how many images."""
    results = payload["targets"]
    counts = sorted({r["n"] for r in results})
    lines = [
        f"(top-1 to ECE: the {payload['which']} weights on {'/'.join(f'{n:,}' for n in counts)} {payload['split']} "
        "images; best/last: the run's best- and last-epoch test top-1 while training"
        + (";" if groups else ")")
    ]
    if groups:
        available = [r["energy_groups"] for r in results if r["energy_groups"].get("available")]
        rates = ", ".join(f"{x:g}" for x in sorted({e["rate"] for e in available})) or "-"
        samples = "/".join(f"{n:,}" for n in sorted({e["samples"] for e in available})) or "the"
        missing = "; '-' where no score file was found" if len(available) < len(results) else ""
        lines.append(
            f" low/others/high: top-1 on {samples} training images in the teacher's low/others/high "
            f"energy sets (rate {rates}){missing})"
        )
    if payload.get("cached"):
        lines.append(
            f"({payload['cached']} of {len(results)} from the evaluation cache: same weights, data and "
            "options; --no-cache measures again)"
        )
    if payload.get("interrupted"):
        lines.append(f"interrupted: {len(results)} of {payload['requested']} targets evaluated.")
    return lines


def group_results_sorted(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups in label order, so a configuration's repeats and its variants read together."""
    return sorted(groups, key=lambda g: g["label"])
