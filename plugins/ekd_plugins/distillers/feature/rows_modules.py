"""Table rows of VID, OFD, CRD and ReviewKD (torch-free)."""

from __future__ import annotations

from typing import Any

ROWS: list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]] = []
