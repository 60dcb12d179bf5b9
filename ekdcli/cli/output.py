"""What commands print: human text on stdout/stderr, or one JSON document with ``--json``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


class Console:
    """Human messages go to stdout unless ``--json`` (then stderr) or ``--quiet`` (then nowhere)."""

    def __init__(self, quiet: bool = False, json_mode: bool = False) -> None:
        self.quiet = quiet
        self.json_mode = json_mode

    def say(self, message: str = "") -> None:
        if not self.quiet:
            click.echo(message, err=self.json_mode)

    def warn(self, message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def result(self, payload: Any, text: str | None = None) -> None:
        """The command's result: JSON on stdout with ``--json``, else ``text``."""
        if self.json_mode:
            sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        elif text is not None:
            click.echo(text)
