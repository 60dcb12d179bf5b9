"""The PNG of ``ekd report``: grouped bars (pairs on the x axis, one bar per row, ± std), or lines over
the rate for rate sweeps (one line per augmentation and pair); the paper's numbers as black marks,
on a second axis of their own when they lie far above ours (a small-scale campaign's bars would
otherwise be squashed at the bottom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ekdcli.method.figures import pyplot, save_figure


def draw(result: dict[str, Any], path: Path, layout: str) -> Path:
    plt = pyplot()
    table = result["table"]
    width = max(6.0, 1.2 + 0.45 * len(table["rows"]) * max(1, len(table["columns"])))
    fig, ax = plt.subplots(figsize=(min(width, 18.0) + 2.5, 4.8))  # + the legend's column
    if layout == "lines":
        _lines(ax, table["cells"])
        ax.set_xlabel("rate r (fraction mixed)")
    else:
        _bars(ax, table)
    ax.set_ylabel(f"test top-1 (%), {result['which']} weights")
    ax.set_title(result["title"] + (f" vs {result['paper']['table']}" if result.get("paper") else ""))
    ax.grid(axis="y", alpha=0.3)
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    labels = [label for a in fig.axes for label in a.get_legend_handles_labels()[1]]
    right = 1.08 if len(fig.axes) > 1 else 1.01  # past the paper's axis, when it has one
    ax.legend(
        handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(right, 1.0), borderaxespad=0
    )  # beside, never over a bar
    return save_figure(fig, path)


MARGIN = 10.0  # points: paper marks further than this above every bar get their own axis


def separate_axis(ours: list[float], paper: list[float]) -> bool:
    """Whether the paper's numbers (percent) need an axis of their own beside ours."""
    return bool(ours and paper) and min(paper) > max(ours) + MARGIN


def _bars(ax: Any, table: dict[str, Any]) -> None:
    lookup = {(c["row"], c["column"]): c for c in table["cells"]}
    rows, columns = table["rows"], table["columns"]
    cells = [c for c in table["cells"] if c["top1"]["mean"] is not None]
    ours = [100 * (c["top1"]["mean"] + (c["top1"]["std"] or 0.0)) for c in cells]
    marks = [100 * c["paper"] for c in cells if c.get("paper") is not None]
    paper_ax = ax
    if separate_axis(ours, marks):
        paper_ax = ax.twinx()
        paper_ax.set_ylabel("paper's top-1 (%), black marks")
        paper_ax.set_ylim(min(marks) - 5, max(marks) + 2)
    step = 0.8 / max(1, len(rows))
    paper_shown = False
    # one colour per row: matplotlib's default cycle repeats after 10, tab20 after 20
    palette = pyplot().get_cmap("tab10" if len(rows) <= 10 else "tab20").colors
    for i, row in enumerate(rows):
        xs, means, stds = [], [], []
        for j, column in enumerate(columns):
            cell = lookup.get((row, column))
            if cell is None or cell["top1"]["mean"] is None:
                continue
            x = j - 0.4 + step * (i + 0.5)
            xs.append(x)
            means.append(100 * cell["top1"]["mean"])
            stds.append(100 * (cell["top1"]["std"] or 0.0))
            if cell.get("paper") is not None:
                label = None if paper_shown else "paper" + (" (right axis)" if paper_ax is not ax else "")
                paper_ax.plot(
                    [x - step / 2, x + step / 2], [100 * cell["paper"]] * 2, color="black", lw=2, label=label
                )
                paper_shown = True
        ax.bar(xs, means, width=step * 0.9, yerr=stds, capsize=2, label=row, color=palette[i % len(palette)])
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(
        columns, rotation=15 if len(columns) > 3 else 0, ha="right" if len(columns) > 3 else "center"
    )


def _lines(ax: Any, cells: list[dict[str, Any]]) -> None:
    series: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        v = cell["variant"]
        if not isinstance(v.get("rate"), (int, float)) or cell["top1"]["mean"] is None:
            continue
        kind = f"{v['method']} + {v['augment']}" + (" random" if v.get("selection") == "random" else "")
        series.setdefault(f"{kind}, {cell['column']}", []).append(cell)
    for name, members in series.items():
        members.sort(key=lambda c: c["variant"]["rate"])
        xs = [c["variant"]["rate"] for c in members]
        ys = [100 * c["top1"]["mean"] for c in members]
        errs = [100 * (c["top1"]["std"] or 0.0) for c in members]
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=2, label=name)
        paper = [(c["variant"]["rate"], 100 * c["paper"]) for c in members if c.get("paper") is not None]
        if paper:
            ax.plot(*zip(*paper, strict=True), "k--", marker="x", label=f"paper: {name}")
