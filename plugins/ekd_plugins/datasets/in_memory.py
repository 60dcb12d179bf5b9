"""What the datasets made in memory (digits, fake) share."""

from __future__ import annotations

from ekdcli.sdk.errors import UsageError


def refuse_root(name: str, root: str | None) -> None:
    """Data made in memory reads no files: a --data-root given with it is a mistake, said at once."""
    if root:
        raise UsageError(
            f"data {name!r} is made in memory and reads no files, so --data-root {root} would be ignored; "
            "drop --data-root, or name the data it holds with --data (e.g. --data cifar100)."
        )
