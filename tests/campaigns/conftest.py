"""A reference campaign on the embedded digits data, run once per test session by ``ekd sweep``
(campaign_helpers.py says what it holds)."""

from __future__ import annotations

import pytest
from campaign_helpers import CONFIGS, Reference, sweep


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    folder = tmp_path_factory.mktemp("campaign")
    for stem, text in CONFIGS.items():
        (folder / f"{stem}.toml").write_text(text)
    store = folder / "store"
    done = sweep(folder, store, "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    return Reference(folder, store, done.stdout)
