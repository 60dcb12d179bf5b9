"""Which registered dataset a ``--data-root`` holds, when ``--data`` is not given.

A dataset registers what its files look like in ``info["recognize"]``:

* ``npz_classes``: an ``.npz`` whose ``class_names`` (else ``max(y_train) + 1``) count this many
  classes (CIFAR-100: 100);
* ``npz_name``: the name of its ``.npz`` inside a directory (``cifar100.npz``);
* ``folder``: its extracted folder, given itself or inside a directory (``cifar-100-python``).

Exactly one dataset must match; otherwise the user names it.  No torch: this runs while the
configuration is resolved, before any command imports it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from ekdcli.util.errors import UsageError


def npz_classes(path: Path) -> int | None:
    """The number of classes of a dataset ``.npz`` (None when it is not one)."""
    import numpy as np

    if not zipfile.is_zipfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "class_names" in archive.files:
                return int(archive["class_names"].shape[0])
            if "y_train" in archive.files:
                return int(archive["y_train"].max()) + 1
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    return None


def _matches(signature: dict[str, Any], root: Path, classes: int | None) -> bool:
    if root.is_file():
        return classes is not None and signature.get("npz_classes") == classes
    folder, npz = signature.get("folder"), signature.get("npz_name")
    if folder and (root.name == folder or (root / folder).is_dir()):
        return True
    return bool(npz) and (root / str(npz)).is_file()


def recognize_data_root(data_root: str) -> str:
    """The name of the one registered dataset whose files ``data_root`` holds; else one sentence."""
    from ekdcli.sdk.plugins import registry

    root = Path(data_root).expanduser()
    if not root.exists():
        raise UsageError(
            f"--data-root {data_root} does not exist and no --data names the dataset; check the path."
        )
    classes = npz_classes(root) if root.is_file() else None
    found = [
        c.name
        for c in registry("datasets").list()
        if isinstance(c.info.get("recognize"), dict) and _matches(c.info["recognize"], root, classes)
    ]
    if len(found) == 1:
        return found[0]
    what = f"an .npz with {classes} classes" if classes is not None else "it"
    candidates = f" (it could be {' or '.join(found)})" if found else ""
    raise UsageError(
        f"--data-root {data_root} is given without --data and ekd cannot tell which dataset {what} "
        f"holds{candidates}; name it with --data (see 'ekd list datasets')."
    )
