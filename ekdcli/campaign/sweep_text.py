"""What ``ekd sweep --status`` prints (and ``ekd sweep`` at its end)."""

from __future__ import annotations

from typing import Any

from ekdcli.util.text import pct


def _epochs(run: dict[str, Any]) -> str:
    done, planned = run.get("epochs_done") or 0, run.get("epochs_planned")
    return f"{done}/{planned}" if planned else (str(done) if done else "-")


def status_text(result: dict[str, Any]) -> str:
    """``ekd sweep --status``: counts, whether a sweep is running it, and one line per run."""
    counts = result["counts"]
    pid = result.get("sweep_pid")
    running = f"an ekd sweep (PID {pid}) is running it" if pid else "no ekd sweep is running it"
    lines = [
        f"campaign {result['campaign']}: {len(result['runs'])} runs, "
        + ", ".join(f"{n} {state}" for state, n in counts.items())
        + f"; {running}",
        f"  {result['dir']}",
    ]
    rows = [["run", "state", "epochs", "best top-1", "last top-1", "note"]]
    for run in result["runs"]:
        state = run["state"]
        note = run.get("error", "")
        if state == "running" and not pid:
            state, note = "interrupted", "resumes from its checkpoint at the next ekd sweep"
        rows.append(
            [
                run["run"],
                state,
                _epochs(run),
                pct(run.get("best_top1"), suffix="%"),
                pct(run.get("last_top1"), suffix="%"),
                note,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)] + [row[-1]]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)
