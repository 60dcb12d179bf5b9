"""What jobs print: human text on stdout/stderr, or one JSON document with ``--json``.

No click here: jobs run from the CLI, from the Python API and from campaign workers alike.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ekdcli.util import transcript


class Console:
    """Human messages go to stdout unless ``--json`` (then stderr) or ``--quiet`` (then nowhere);
    every one is kept for the run directory's ``run.log`` either way."""

    def __init__(self, quiet: bool = False, json_mode: bool = False) -> None:
        self.quiet = quiet
        self.json_mode = json_mode

    def say(self, message: str = "") -> None:
        transcript.record(message)
        if not self.quiet:
            _write(message, sys.stderr if self.json_mode else sys.stdout)

    def warn(self, message: str) -> None:
        transcript.record(f"warning: {message}")
        _write(f"warning: {message}", sys.stderr)

    def result(self, payload: Any, text: str | None = None) -> None:
        """The command's result: JSON on stdout with ``--json``, else ``text``."""
        if self.json_mode:
            _write(json.dumps(payload, indent=2, sort_keys=True, default=str), sys.stdout)
        elif text is not None:
            _write(text, sys.stdout)


def _write(text: str, stream: Any) -> None:
    stream.write(text + "\n")
    stream.flush()
