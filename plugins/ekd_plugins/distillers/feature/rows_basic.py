"""Table rows of FitNet, AT, PKT, RKD, SP, NST and KDSVD (torch-free)."""

from __future__ import annotations

from typing import Any

ROWS: list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]] = []
