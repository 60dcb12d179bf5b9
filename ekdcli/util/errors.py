"""The error hierarchy: each error is one sentence for the user, with what to do next.

``UsageError`` (exit 2) is a mistake in what the user asked for; ``JobError``
(exit 1) is a job that could not finish.  The CLI prints ``message`` and exits
with ``exit_code``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EkdError(Exception):
    exit_code = 1

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class UsageError(EkdError):
    """Bad input: unknown names, bad options, missing files the user must provide."""

    exit_code = 2


class JobError(EkdError):
    """A job that started and failed (non-finite loss, interrupted, ...)."""

    exit_code = 1


class PluginError(EkdError):
    """A plugin that cannot be loaded or that conflicts with another."""

    exit_code = 1


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Names similar to ``name`` for "did you mean" hints."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    hits = closest(name, candidates)
    return f" Did you mean {', '.join(repr(h) for h in hits)}?" if hits else ""
