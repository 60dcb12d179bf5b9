"""The ``energy`` and ``gradation`` rules (docs/method.md#temperature-rule-paper-vs-released-code).

Energy KD and Energy DKD are KD and DKD with the ``energy`` rule; any temperature-based
distiller takes it with ``--temperature-rule energy``.

Two presets, because the paper and the authors' released code disagree:

* ``paper`` (Eq. 9): low-energy samples get ``t + t_plus`` (6), high-energy
  samples ``t + t_minus`` (2), others ``t`` (4); energies from the score file
  (``static``); low side ``E <= E_low``.
* ``official`` (released code): low-energy 2, others 4, high-energy 6;
  energies recomputed from the current batch (``online``); low side ``E < E_low``.

Every sample is put in a *group* (low / mid / high, or one of ``segments``
equal-count energy segments for temperature gradation); each group has one
temperature.  Static energies are turned into a per-index group table once in
:meth:`EnergyRule.setup`, so a batch costs one gather.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ekd_plugins.pairs import energy_rate_for
from ekd_plugins.temperature_rules.options import ENERGY_OPTIONS, GRADATION_OPTIONS, GRADATION_SEGMENTS
from ekdcli.sdk.contracts import EnergyGroups, RuleSummary, TemperatureRule
from ekdcli.sdk.energy import MAX_SEGMENTS, LowRule, as_low_rule
from ekdcli.sdk.errors import UsageError
from ekdcli.sdk.options import (
    as_choice,
    as_float,
    as_int,
    as_pair,
    both_sides_rate,
    check_names,
    given,
    owner,
    partition_rates,
    pick,
)

if TYPE_CHECKING:
    import torch

    from ekdcli.sdk.contracts import EnergyContext
    from ekdcli.sdk.energy import Thresholds

PRESETS: dict[str, dict[str, Any]] = {
    # t_plus / t_minus are offsets from the base temperature, applied to low / high energy.
    "paper": {"t_plus": 2.0, "t_minus": -2.0, "source": "static", "low_rule": "paper"},
    # absolute temperatures of the released code
    "official": {"t_low_energy": 2.0, "t_high_energy": 6.0, "source": "online", "low_rule": "released"},
}
SOURCES = ("static", "online")
APPLY = ("both", "low", "high")
LOW_RULES = ("paper", "released")
BASE_T = 4.0
DEFAULT_RATE = 0.2


def temperature_key(value: float) -> str:
    """Stats key counting the samples that got temperature ``value``, e.g. ``n_T4``."""
    return f"n_T{value:g}"


class EnergyRule(TemperatureRule):
    """Per-sample temperatures from teacher energies; validated at construction.

    ``options`` are those of :data:`~ekd_plugins.temperature_rules.options.ENERGY_OPTIONS`
    (``None`` = not given); ``pair`` picks the released rates of known pairs under the
    ``official`` preset.  ``method`` is the label errors name (``temperature rule 'energy'``).
    """

    needs_energy = True

    def __init__(
        self, method: str, options: dict[str, Any], pair: tuple[str, str] | None = None, name: str = "energy"
    ) -> None:
        self.method, self.name = method, name
        self.preset = as_choice(method, "preset", options.get("preset") or "paper", PRESETS)
        preset = PRESETS[self.preset]
        self.source = as_choice(method, "source", options.get("source") or preset["source"], SOURCES)
        self.low_rule: LowRule = as_low_rule(
            as_choice(method, "low_rule", options.get("low_rule") or preset["low_rule"], LOW_RULES)
        )
        self.apply = as_choice(method, "apply", options.get("apply") or "both", APPLY)
        self.energy_temperature = as_float(
            method,
            "energy_temperature",
            pick(options, "energy_temperature", ENERGY_OPTIONS["energy_temperature"]),
            positive=True,
        )
        self._resolve_rates(options, pair)
        self._resolve_temperatures(options, preset)
        # filled by setup()
        self.thresholds: Thresholds | None = None
        self.edges: torch.Tensor | None = None
        self.train_counts: dict[str, int] | None = None
        self._values: torch.Tensor | None = None
        self._table: torch.Tensor | None = None

    # ------------------------------------------------------------ resolution
    def _resolve_rates(self, options: dict[str, Any], pair: tuple[str, str] | None) -> None:
        m = self.method
        released = energy_rate_for(pair) if self.preset == "official" and pair is not None else None
        if given(options, "rate"):
            base, self.rate_source = both_sides_rate(m, "rate", options["rate"]), "rate"
        elif released is not None and pair is not None:
            base, self.rate_source = released, f"released rate of {pair[0]}->{pair[1]}"
        else:
            base, self.rate_source = DEFAULT_RATE, "default"
        self.low_rate, self.high_rate = partition_rates(
            m, pick(options, "low_rate", base), pick(options, "high_rate", base)
        )

    def _resolve_temperatures(self, options: dict[str, Any], preset: dict[str, Any]) -> None:
        m = self.method
        for a, b in (("t_plus", "t_low_energy"), ("t_minus", "t_high_energy")):
            if given(options, a) and given(options, b):
                raise UsageError(
                    f"give either {a!r} or {b!r} to {m}, not both: they set the same temperature."
                )
        t = as_float(m, "t", options["t"], positive=True) if given(options, "t") else None
        t_mid = as_float(m, "t_mid", options["t_mid"], positive=True) if given(options, "t_mid") else None
        if t is not None and t_mid is not None and t != t_mid:
            raise UsageError(f"options 't' and 't_mid' of {m} both set the base temperature; give only one.")
        self.t_mid = t_mid if t_mid is not None else (t if t is not None else BASE_T)
        self.t_low_energy = self._side(options, preset, "t_plus", "t_low_energy")
        self.t_high_energy = self._side(options, preset, "t_minus", "t_high_energy")
        self.segments: int | None = None
        if given(options, "segments"):
            if self.apply != "both":
                raise UsageError(
                    f"option 'apply' of {m} cannot be combined with 'segments' (gradation sets every "
                    "segment's temperature); drop one of them."
                )
            self.segments = as_int(m, "segments", options["segments"], minimum=2, maximum=MAX_SEGMENTS)
        self.t_min = as_float(m, "t_min", pick(options, "t_min", ENERGY_OPTIONS["t_min"]), positive=True)
        self.t_max = as_float(m, "t_max", pick(options, "t_max", ENERGY_OPTIONS["t_max"]), positive=True)
        if self.t_min > self.t_max:
            raise UsageError(
                f"option 't_min' of {m} must not exceed 't_max', got {self.t_min} > {self.t_max}."
            )
        self.group_temperatures = self._group_temperatures()
        self.reference = self.t_mid if self.segments is None else (self.t_min + self.t_max) / 2

    def _side(self, options: dict[str, Any], preset: dict[str, Any], offset: str, absolute: str) -> float:
        """One side's temperature: explicit absolute, explicit offset, then the preset's value."""
        m = self.method
        if given(options, absolute):
            return as_float(m, absolute, options[absolute], positive=True)
        if given(options, offset):
            value = self.t_mid + as_float(m, offset, options[offset])
        elif absolute in preset:
            value = float(preset[absolute])
        else:
            value = self.t_mid + float(preset[offset])
        if value <= 0:
            side = absolute.removeprefix("t_").replace("_", "-")
            raise UsageError(
                f"the {side} temperature of {m} would be t + {offset} = {value:g}; "
                f"choose t and {offset!r} so that their sum is greater than 0."
            )
        return value

    def _group_temperatures(self) -> list[float]:
        if self.segments is not None:
            n = self.segments
            ramp = [self.t_min + (self.t_max - self.t_min) * k / (n - 1) for k in range(n)]
            # paper: lowest energy = most certain = smoothest (t_max); released direction: t_min first
            return ramp[::-1] if self.preset == "paper" else ramp
        low = self.t_low_energy if self.apply in ("both", "low") else self.t_mid
        high = self.t_high_energy if self.apply in ("both", "high") else self.t_mid
        return [low, self.t_mid, high]

    @property
    def group_names(self) -> list[str]:
        if self.segments is not None:
            return [f"segment{k}" for k in range(self.segments)]
        return ["low", "mid", "high"]

    # ----------------------------------------------------------------- setup
    def setup(self, energy: EnergyContext | None) -> None:
        """Thresholds (or segment edges) of the whole training set; the per-index table for static."""
        import torch

        from ekdcli.sdk.energy import compute_thresholds, segment_edges

        if energy is None:
            raise UsageError(
                f"{self.method} needs teacher energies; run `ekd score` for this teacher and dataset first."
            )
        if not math.isclose(float(energy.energy_temperature), self.energy_temperature, rel_tol=1e-6):
            raise UsageError(
                f"the score file was computed with energy temperature {energy.energy_temperature:g} but "
                f"{self.method} asks for {self.energy_temperature:g}; set energy_temperature = "
                f"{energy.energy_temperature:g} or rescore with `ekd score`."
            )
        energies = energy.energies.detach().float()
        device = energies.device
        if self.segments is None:
            self.thresholds = compute_thresholds(energies, self.low_rate, self.high_rate, self.low_rule)
        else:
            self.edges = segment_edges(energies, self.segments).to(device)
        self._values = torch.tensor(self.group_temperatures, dtype=torch.float32, device=device)
        table = self.groups_of(energies)
        counts = torch.bincount(table, minlength=len(self.group_temperatures)).tolist()
        self.train_counts = dict(zip(self.group_names, counts, strict=True))
        self._table = table if self.source == "static" else None

    # -------------------------------------------------------------- hot path
    def groups_of(self, energies: torch.Tensor) -> torch.Tensor:
        """Group number of each energy (low 0 / mid 1 / high 2, or the segment number)."""
        import torch

        from ekdcli.sdk.energy import segment_of

        if self.edges is not None:
            return segment_of(energies, self.edges)
        if self.thresholds is None:
            raise RuntimeError("EnergyRule.setup() must run before temperatures are assigned")
        groups = torch.where(self.thresholds.is_low(energies), 0, 1)
        # Eq. 9 tests the high-energy case first, so it wins where both hold (ties, rates summing to 1)
        return torch.where(self.thresholds.is_high(energies), 2, groups)

    def assign(
        self, indices: torch.Tensor, teacher_logits: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(temperatures float32 [B], groups long [B])`` of a batch."""
        from ekdcli.sdk.energy import energy

        if self._values is None:
            raise RuntimeError("EnergyRule.setup() must run before temperatures are assigned")
        if self.source == "static":
            assert self._table is not None
            groups = self._table[indices.to(self._table.device)]
        else:
            if teacher_logits is None:
                raise RuntimeError("the online energy source needs the teacher logits of the batch")
            groups = self.groups_of(energy(teacher_logits, self.energy_temperature).to(self._values.device))
        temps = self._values[groups]
        if teacher_logits is not None:
            temps, groups = temps.to(teacher_logits.device), groups.to(teacher_logits.device)
        return temps, groups

    def temperatures(self, indices: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
        """One float32 temperature per row of the batch."""
        return self.assign(indices, teacher_logits)[0]

    def __call__(
        self,
        teacher_logits: torch.Tensor | None,
        indices: torch.Tensor,
        stats: dict[str, float | torch.Tensor],
    ) -> torch.Tensor:
        """The batch's temperatures; ``stats`` counts the samples per temperature (``n_T<value>``)."""
        temps, groups = self.assign(indices, teacher_logits)
        for key, count in self.stats(groups).items():
            stats[key] = stats.get(key, 0.0) + count
        return temps

    def stats(self, groups: torch.Tensor) -> dict[str, float]:
        """Samples per temperature in a batch, keyed ``n_T<value>`` (groups sharing a value add up)."""
        import torch

        counts = torch.bincount(groups, minlength=len(self.group_temperatures)).tolist()
        out: dict[str, float] = {}
        for value, count in zip(self.group_temperatures, counts, strict=True):
            key = temperature_key(value)
            out[key] = out.get(key, 0.0) + float(count)
        return out

    # -------------------------------------------------------------- summary
    def summary(self) -> RuleSummary:
        """The typed facts the core reads: temperatures per group, the energy source, the rates, and
        after :meth:`setup` the energy groups of the training set."""
        groups = None
        if self.train_counts is not None:
            groups = EnergyGroups(
                sizes=dict(self.train_counts),
                thresholds=None if self.thresholds is None else self.thresholds.as_dict(),
                segment_edges=None if self.edges is None else [float(e) for e in self.edges.tolist()],
            )
        if self.segments is not None:
            temps = list(self.group_temperatures)
            text = (
                f"{self.preset} preset: T {temps[0]:g} .. {temps[-1]:g} over {self.segments} energy segments, "
                f"{self.source} energies"
            )
            return RuleSummary(text, temps, self.source, groups=groups)
        named = dict(zip(self.group_names, self.group_temperatures, strict=True))
        rates = f"rates {self.low_rate:g} / {self.high_rate:g}"
        rates += f" ({self.rate_source})" if self.rate_source not in ("default", "rate") else ""
        text = (
            f"{self.preset} preset: T {' / '.join(f'{v:g}' for v in named.values())} for low / other / high "
            f"energy, {rates}, {self.source} energies, {self.low_rule} low rule"
        )
        return RuleSummary(
            text, named, self.source, (self.low_rate, self.high_rate), self.rate_source, groups
        )

    # -------------------------------------------------------------- describe
    def describe(self) -> dict[str, Any]:
        """Everything that decides a sample's temperature (printed at start, stored with the run)."""
        out: dict[str, Any] = {
            "preset": self.preset,
            "source": self.source,
            "energy_temperature": self.energy_temperature,
        }
        if self.segments is None:
            out.update(
                {
                    "mode": "partition",
                    "apply": self.apply,
                    "low_rule": self.low_rule,
                    "low_rate": self.low_rate,
                    "high_rate": self.high_rate,
                    "rate_source": self.rate_source,
                    "temperatures": dict(zip(self.group_names, self.group_temperatures, strict=True)),
                    "thresholds": None if self.thresholds is None else self.thresholds.as_dict(),
                }
            )
        else:
            out.update(
                {
                    "mode": "gradation",
                    "segments": self.segments,
                    "t_min": self.t_min,
                    "t_max": self.t_max,
                    "temperatures": list(self.group_temperatures),
                    "segment_edges": None if self.edges is None else [float(e) for e in self.edges.tolist()],
                }
            )
        out["train_counts"] = self.train_counts
        return out


# ------------------------------------------------------------------ factories
def make_energy(**options: Any) -> EnergyRule:
    who = owner("temperature rule", "energy")
    check_names(who, options, ENERGY_OPTIONS)
    return EnergyRule(who, options, pair=as_pair(who, options.get("pair")))


def make_gradation(**options: Any) -> EnergyRule:
    """The energy rule in its gradation mode: ``segments`` (10) segments from ``t_min`` to ``t_max``."""
    who = owner("temperature rule", "gradation")
    check_names(who, options, GRADATION_OPTIONS)
    opts = {**options, "segments": pick(options, "segments", GRADATION_SEGMENTS)}
    return EnergyRule(who, opts, name="gradation")
