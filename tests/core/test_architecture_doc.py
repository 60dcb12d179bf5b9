"""docs/architecture.md stays true to the code: every module of ekdcli/ has its place in the table."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _rows() -> dict[str, str]:
    """``{"ekdcli/jobs/": row text, "ekdcli/api.py": row text, ...}`` of the "What each folder owns" table."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        found = re.match(r"\| `(ekdcli/[^`]*)` \| (.*) \|$", line)
        if found:
            rows[found.group(1)] = found.group(2)
    return rows


def _missing(rows: dict[str, str]) -> list[str]:
    missing = []
    for path in sorted((ROOT / "ekdcli").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path.name in ("__init__.py", "__main__.py") or rel in rows:
            continue
        folder = next(
            (f for f in sorted(rows, key=len, reverse=True) if f.endswith("/") and rel.startswith(f)), None
        )
        inner = rel.removeprefix(folder) if folder else rel
        if folder is None or f"`{inner}`" not in rows[folder] and f"`{path.name}`" not in rows[folder]:
            missing.append(rel)
    return missing


def test_every_module_of_ekdcli_is_in_the_architecture_table() -> None:
    missing = _missing(_rows())
    assert missing == [], f"add these modules to the table of docs/architecture.md: {', '.join(missing)}"


def test_the_check_notices_a_module_without_a_row() -> None:
    rows = _rows()
    rows["ekdcli/jobs/"] = rows["ekdcli/jobs/"].replace("`plan.py`", "plan")
    assert "ekdcli/jobs/plan.py" in _missing(rows)
