"""The options each temperature rule takes, with their defaults (torch-free; ``ekd list`` shows them).

``None`` means "not given" and, as a default, "decided by the preset or the teacher/student pair".
"""

from __future__ import annotations

from typing import Any

from ekdcli.sdk.energy import ENERGY_TEMPERATURE

FIXED_OPTIONS: dict[str, Any] = {"t": 4.0}
ENERGY_OPTIONS: dict[str, Any] = {
    "preset": "paper",
    "source": None,
    "apply": "both",
    "low_rule": None,
    "rate": None,
    "low_rate": None,
    "high_rate": None,
    "t": None,
    "t_mid": None,
    "t_plus": None,
    "t_minus": None,
    "t_low_energy": None,
    "t_high_energy": None,
    "segments": None,
    "t_min": 2.0,
    "t_max": 6.0,
    "energy_temperature": ENERGY_TEMPERATURE,
    "pair": None,
}
GRADATION_SEGMENTS = 10  # Table 4 of the paper
GRADATION_OPTIONS: dict[str, Any] = {
    "preset": "paper",
    "source": None,
    "segments": GRADATION_SEGMENTS,
    "t_min": 2.0,
    "t_max": 6.0,
    "energy_temperature": ENERGY_TEMPERATURE,
}
