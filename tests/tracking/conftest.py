"""Register a tracker in-process beside the real ones, for one test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ekdcli.sdk.contracts import Tracker


@pytest.fixture
def add_tracker() -> Iterator[Callable[[str, Callable[[], Tracker]], None]]:
    """``add_tracker(name, factory)``: a tracker the process's registry knows, for this test only."""
    from ekdcli.sdk.plugins import registry, reset_plugins
    from ekdcli.sdk.registry import Component

    def add(name: str, factory: Callable[[], Tracker]) -> None:
        assert registry("trackers").add(Component("trackers", name, factory, "tests")) is None

    yield add
    reset_plugins()
