"""The paper's numbers (``paper_results.toml`` beside this module): one file for ``ekd report --paper``
and for ``examples/paper/generate.py``.  No torch."""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ekdcli.util.errors import UsageError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

RESULTS = Path(__file__).with_name("paper_results.toml")

Pair = tuple[str, str]


@dataclass(frozen=True)
class PaperRow:
    id: str
    label: str
    match: dict[str, Any]
    top1: tuple[float | None, ...]  # percent, per column; None where the paper has no number
    top5: tuple[float | None, ...]

    def matches(self, variant: dict[str, Any]) -> bool:
        """Whether a run with these settings (``ekdcli.campaign.report.variant``) is this row: every
        setting of the row, and the temperature rule its method implies unless the row names one."""
        if "rule" not in self.match and variant.get("rule") is not None:
            return False
        return all(_same(variant.get(key), value) for key, value in self.match.items())


@dataclass(frozen=True)
class PaperTable:
    name: str
    title: str
    columns: tuple[Pair, ...]
    rows: tuple[PaperRow, ...]
    layout: str  # "bars" or "lines" (rate sweeps)
    kind: str  # "accuracy" or "time"
    note: str
    data: str | None
    raw: dict[str, Any]
    data_options: dict[str, Any]  # the dataset's options the table's runs used (long-tail settings)

    def setting(self) -> str:
        """``cifar100-lt (imbalance_factor 0.5, profile exp)``: the data the table's runs used."""
        options = ", ".join(f"{k} {v}" for k, v in self.data_options.items())
        return f"{self.data}" + (f" ({options})" if options else "")

    def same_data(self, data: str, options: dict[str, Any], defaults: dict[str, Any]) -> bool:
        """Whether a run on ``data`` with ``options`` (its dataset's ``defaults`` for the rest) has
        this table's setting."""
        if self.data is None:
            return True
        values = {**defaults, **options}
        return data == self.data and all(_same(values.get(k), v) for k, v in self.data_options.items())

    def row_index(self, variant: dict[str, Any]) -> int | None:
        """The position of the paper's row a run is (None: none of its rows)."""
        return next((i for i, row in enumerate(self.rows) if row.matches(variant)), None)

    def value(self, variant: dict[str, Any], pair: Pair, metric: str = "top1") -> float | None:
        """The paper's number (percent) for a run's settings and pair, if the paper has one."""
        if pair not in self.columns:
            return None
        column = self.columns.index(pair)
        for row in self.rows:
            if row.matches(variant):
                values = getattr(row, metric)
                return values[column] if column < len(values) else None
        return None

    def cells(self, metric: str = "top1") -> dict[Pair, dict[str, float | None]]:
        """``{pair: {row id: value}}`` (what generate.py builds its comments from)."""
        return {
            pair: {row.id: (getattr(row, metric) or (None,) * len(self.columns))[i] for row in self.rows}
            for i, pair in enumerate(self.columns)
        }


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, float) and isinstance(have, (int, float)) and not isinstance(have, bool):
        return math.isclose(float(have), want, abs_tol=1e-9)
    return bool(have == want)


def _numbers(values: list[Any]) -> tuple[float | None, ...]:
    return tuple(None if isinstance(v, float) and math.isnan(v) else float(v) for v in values)


def _pair(text: str) -> Pair:
    teacher, _, student = text.partition("->")
    return teacher.strip(), student.strip()


@functools.cache
def _load() -> dict[str, Any]:
    with RESULTS.open("rb") as handle:
        return tomllib.load(handle)


def table_names() -> list[str]:
    return list(_load())


def table(name: str) -> PaperTable:
    """One table of the paper; an unknown name lists the valid ones."""
    data = _load()
    key = name.strip().lower()
    if key not in data:
        names = table_names()
        raise UsageError(
            f"the paper has no table {name!r}.{did_you_mean(key, names)} Choose one of {', '.join(names)}."
        )
    raw = data[key]
    rows = tuple(
        PaperRow(
            str(r["id"]),
            str(r["label"]),
            dict(r.get("match", {})),
            _numbers(r.get("top1", [])),
            _numbers(r.get("top5", [])),
        )
        for r in raw.get("rows", [])
    )
    return PaperTable(
        name=key,
        title=str(raw.get("title", key)),
        columns=tuple(_pair(c) for c in raw.get("columns", [])),
        rows=rows,
        layout=str(raw.get("layout", "bars")),
        kind=str(raw.get("kind", "accuracy")),
        note=str(raw.get("note", "")),
        data=raw.get("data"),
        raw=raw,
        data_options=dict(raw.get("data_options", {})),
    )
