"""``ekd class-counts``: training and test images per class of any registered dataset.

An example of ``register_commands``: a plain click command.  ekd imports this module
only when the command runs; errors raised as :class:`ekdcli.sdk.errors.UsageError` reach
the user as one sentence with exit code 2, like the built-in commands' errors.
"""

from __future__ import annotations

import json as jsonlib
from typing import Any

import click

from ekdcli.sdk.errors import UsageError


def parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("imbalance_factor=0.05", ...)`` -> ``{"imbalance_factor": "0.05"}`` (factories parse the values)."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option takes KEY=VALUE, got {pair!r}; e.g. --option imbalance_factor=0.05.")
        options[key.strip()] = value.strip()
    return options


def count_classes(dataset: Any) -> dict[str, Any]:
    """Per-class image counts of both splits and the head/tail ratio of the training split."""
    import torch

    k = dataset.num_classes
    train = torch.bincount(torch.as_tensor(dataset.labels("train")).cpu(), minlength=k)[:k].tolist()
    test = torch.bincount(torch.as_tensor(dataset.labels("test")).cpu(), minlength=k)[:k].tolist()
    present = [n for n in train if n > 0]
    ratio = max(present) / min(present) if present else 0.0
    classes = [
        {"class": name, "train": a, "test": b}
        for name, a, b in zip(dataset.class_names, train, test, strict=True)
    ]
    return {"dataset": dataset.name, "classes": classes, "imbalance_ratio": ratio, "train": sum(train)}


@click.command("class-counts")
@click.option("--data", default="digits", show_default=True, help="A registered dataset name.")
@click.option("--data-root", default=None, help="Its data directory or file, when it needs one.")
@click.option(
    "--option", "-o", "pairs", multiple=True, metavar="KEY=VALUE", help="A dataset option (repeat)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON on stdout, nothing else.")
def class_counts(data: str, data_root: str | None, pairs: tuple[str, ...], as_json: bool) -> None:
    """Images per class of a dataset, and its imbalance ratio (max / min training images).

    \b
    Example:
      ekd class-counts --data digits-lt --option imbalance_factor=0.05
      ekd class-counts --data listfile-lt --data-root ./my-lt --json
    """
    from ekdcli.sdk.plugins import registry

    dataset = registry("datasets").get(data).build(data_root, **parse_options(pairs))
    result = count_classes(dataset)
    if as_json:
        click.echo(jsonlib.dumps(result))
        return
    width = max(len(c["class"]) for c in result["classes"])
    ratio = result["imbalance_ratio"]
    click.echo(f"{result['dataset']}: {result['train']} training images, imbalance ratio {ratio:.1f}")
    for row in result["classes"]:
        click.echo(f"  {row['class']:<{width}}  train {row['train']:>6}  test {row['test']:>6}")
