"""Feature-based distillers: mdistiller's FitNet, AT, PKT, RKD, SP, NST, KDSVD, VID, OFD, CRD, ReviewKD.

Torch-free like the rest of the distillers' table: each row is ``(name, "module:factory",
aliases, description, info)`` with ``info["kind"] = "feature"``, the ``features`` and
``model_hooks`` the method reads and its ``options`` record (``options_basic.py``,
``options_modules.py``).
"""

from __future__ import annotations

from typing import Any

from ekd_plugins.distillers.feature.rows_basic import ROWS as _BASIC
from ekd_plugins.distillers.feature.rows_modules import ROWS as _MODULES

FEATURE_TABLE: list[tuple[str, str, tuple[str, ...], str, dict[str, Any]]] = [*_BASIC, *_MODULES]
