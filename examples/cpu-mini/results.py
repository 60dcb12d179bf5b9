"""Write examples/cpu-mini/RESULTS.md from the campaign's ``ekd report`` (report.json) and its runs.

    ekd report cpu-mini --store STORE --out examples/cpu-mini/results
    python examples/cpu-mini/results.py examples/cpu-mini/results/report.json --store STORE \
        > examples/cpu-mini/RESULTS.md

Every number comes from the report (``ekd evaluate``'s numbers) or from the runs' own files; the
comparisons say plainly whether a difference is larger than the spread over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "plugins"):  # run from a checkout without installing ekd
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from ekdcli.store import rundir  # noqa: E402
from ekdcli.store.weights import meta_value, read_metadata  # noqa: E402

# (A, B, why the comparison matters); rows as `ekd report` labels them
COMPARISONS = [
    ("kd", "ce", "does distillation from this teacher help at all"),
    ("dkd", "kd", "DKD over KD"),
    ("energy_kd (official)", "kd", "Energy KD (released rule) over KD"),
    ("energy_kd (paper)", "kd", "Energy KD (paper's Eq. 9) over KD"),
    ("energy_kd (paper)", "energy_kd (official)", "the paper's rule against the released one"),
    ("energy_dkd (official)", "dkd", "Energy DKD over DKD (Table 2's claim)"),
    ("kd + he-cutmix 50%", "kd", "HE-DA over plain KD (Table 5's claim)"),
    (
        "kd + he-cutmix 50%",
        "kd + cutmix 50% random",
        "high-energy choice over a random choice of as many samples",
    ),
    ("fitnet", "kd", "FitNet (hint regression, feature-based) against KD"),
    ("at", "kd", "attention transfer (feature-based) against KD"),
    ("crd", "kd", "CRD (contrastive, feature-based) against KD"),
    ("reviewkd", "kd", "ReviewKD (feature-based) against KD"),
    ("energy_dkd (official)", "reviewkd", "Energy DKD against the strongest feature method here"),
]


def cells_by_row(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cells = report["table"]["cells"]
    if len(report["table"]["columns"]) != 1:
        raise SystemExit("expected one teacher->student pair (the cpu-mini campaign)")
    return {cell["row"]: cell for cell in cells}


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """``A - B`` in points, and whether it is larger than the seeds' spread of both."""
    sa, sb = a["top1"], b["top1"]
    diff = 100 * (sa["mean"] - sb["mean"])
    spread = 100 * max(sa["std"] or 0.0, sb["std"] or 0.0)
    what = f"{diff:+.2f} points (std {100 * (sa['std'] or 0):.2f} / {100 * (sb['std'] or 0):.2f}, n = {sa['n']} / {sb['n']})"
    if abs(diff) <= spread:
        return f"{what}: within one std, **not a result**"
    if abs(diff) <= 2 * spread:
        return f"{what}: between one and two stds, **a hint at most** with {min(sa['n'], sb['n'])} seeds"
    return f"{what}: more than two stds, **a difference at this scale**"


def _gap(a: dict[str, Any], b: dict[str, Any]) -> float:
    """``A - B`` in units of the larger of their stds (inf when both are 0)."""
    spread = max(a["top1"]["std"] or 0.0, b["top1"]["std"] or 0.0)
    diff = a["top1"]["mean"] - b["top1"]["mean"]
    return diff / spread if spread else float("inf") * (1 if diff >= 0 else -1)


def control_reading(he: dict[str, Any], random_: dict[str, Any], kd: dict[str, Any]) -> str:
    """What the random-selection control says about HE-DA's gain over KD in this campaign."""
    over_kd, over_random = _gap(he, kd), _gap(he, random_)
    if over_kd > 2 and abs(over_random) <= 1:
        return (
            "HE-DA's gain over KD comes from mixing itself here: CutMix on a random choice of as many "
            "samples gives the same within one std, so at this scale choosing the high-energy samples "
            "adds nothing measurable."
        )
    if over_random > 2:
        return "Choosing the high-energy samples beats a random choice of as many by more than two stds here."
    return "The control does not separate the high-energy choice from a random one at this scale."


def mixed_fraction(cell: dict[str, Any]) -> float | None:
    """Share of the training images an augmentation mixed per epoch, over the cell's runs."""
    shares = []
    for run in cell["runs"]:
        config = rundir.read_config(Path(run))
        records = rundir.read_metrics(Path(run))
        images = config.get("limit_train")
        for record in records:
            mixed = record.get("stats", {}).get("augmented")
            if mixed is not None and images:
                shares.append(mixed / images)
    return sum(shares) / len(shares) if shares else None


def teacher_line(store: Path) -> str:
    path = store / "models" / "cifar100" / "resnet20.safetensors"
    if not path.is_file():
        return "(teacher weights not found in the store)"
    meta = read_metadata(path)
    top1 = meta_value(meta, "top1")
    return (
        f"test top-1 {100 * top1:.2f}% after {meta_value(meta, 'epochs')} epochs"
        if isinstance(top1, float)
        else ""
    )


def results(report: dict[str, Any], markdown: str, store: Path) -> str:
    rows = cells_by_row(report)
    lines = [
        "# cpu-mini: the method at CPU scale on real CIFAR-100, 3 seeds",
        "",
        "Produced by `ekd sweep` (the campaign) and `ekd report` (the table and the plot), then",
        "`examples/cpu-mini/results.py` (this text); commands in `examples/cpu-mini/README.md`.",
        "",
        f"* Teacher: ResNet20, cross-entropy, 3 epochs on all 50,000 training images: {teacher_line(store)}.",
        "* Students: ResNet8, 4 epochs (lr 0.05, x0.1 after epoch 3) on the first 10,000 training images,",
        "  seeds 0, 1, 2; test top-1 on all 10,000 test images of the re-split file (500/100 images per",
        "  class, not the official split), the best (= last) weights, as `ekd evaluate` measures them.",
        "",
        markdown.split("\n", 2)[2].strip(),
        "",
        "![top-1 by method](results/report.png)",
        "",
        "## What the numbers show, and what they do not",
        "",
    ]
    for a, b, why in COMPARISONS:
        if a in rows and b in rows:
            lines.append(f"* {a} − {b} ({why}): {compare(rows[a], rows[b])}.")
    he, random_ = rows.get("kd + he-cutmix 50%"), rows.get("kd + cutmix 50% random")
    if he and random_ and "kd" in rows:
        lines.append(f"* **The control:** {control_reading(he, random_, rows['kd'])}")
    if he and random_:
        fh, fr = mixed_fraction(he), mixed_fraction(random_)
        if fh is not None and fr is not None:
            lines.append(
                f"* Mixed per epoch: HE-DA {100 * fh:.1f}% of the training images, the random control "
                f"{100 * fr:.1f}% (the control mixes as many samples as HE-DA, chosen at random)."
            )
    lines += [
        "",
        "The four feature-based rows (FitNet, AT, CRD, ReviewKD: mdistiller's methods, the baselines of",
        "the paper's Tables 1, 3 and 7) run without the teacher cache, since they read the teacher's",
        "intermediate maps; CRD draws 4,096 negatives per sample instead of 16,384 (10,000 images) and",
        "ReviewKD warms up over 1 epoch instead of 20.",
        "",
        "These runs are about 1/300 of the paper's training (4 of 240 epochs on a fifth of the",
        "images: 4/240 x 1/5; with a 3-epoch teacher), so every accuracy is far below the paper's and the methods'",
        "differences here say nothing about the paper's claims at full scale: a difference within one",
        "standard deviation over three seeds is noise, and even a larger one is a statement about this",
        "small setting only. What the campaign does show is that every method runs end to end on the",
        "real images, from one command, and can be compared on equal terms (same data, teacher, seeds).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.json written by ekd report")
    parser.add_argument("--store", type=Path, required=True, help="the campaign's store")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text(encoding="utf-8"))
    markdown = (args.report.parent / "report.md").read_text(encoding="utf-8")
    sys.stdout.write(results(report, markdown, args.store))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
