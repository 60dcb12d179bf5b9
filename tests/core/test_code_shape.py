"""The shape of the code: no function over 60 lines (ruff adds complexity and statement limits)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["ekdcli", "plugins", "examples/plugins", "examples/paper", "benchmarks"]
MAX_LINES = 60


def long_functions(path: Path, limit: int = MAX_LINES) -> list[str]:
    """``file:line name (N lines)`` of every function or method in ``path`` longer than ``limit``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                found.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    return found


def source_files() -> list[Path]:
    files = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = set(path.relative_to(ROOT).parts)
            if not parts & {"tests", "build", ".venv"}:
                files.append(path)
    return files


def test_no_function_is_longer_than_60_lines() -> None:
    files = source_files()
    assert len(files) > 80  # the walk found the code
    offenders = [
        f"{path.parent.relative_to(ROOT)}/{entry}" for path in files for entry in long_functions(path)
    ]
    assert offenders == [], "split these functions:\n" + "\n".join(offenders)


def test_the_check_flags_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    sample = tmp_path / "sample.py"
    sample.write_text(f"def too_long() -> None:\n{body}\n\n\ndef short() -> None:\n    pass\n")
    assert long_functions(sample) == [f"sample.py:1 too_long ({MAX_LINES + 1} lines)"]
