"""What the first-party trackers share: importing their optional library with a useful error."""

from __future__ import annotations

import importlib
from types import ModuleType

from ekdcli.sdk.errors import UsageError


def require(module: str, tracker: str, extra: str) -> ModuleType:
    """``import module``, or one sentence naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"tracker {tracker!r} needs a package that is not installed ({exc}); install it with "
            f"pip install 'ekd[{extra}]', or drop {tracker} from --track."
        ) from exc
