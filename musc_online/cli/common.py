"""Small helpers the offline commands share: list options, device choice, clean failures, the metrics table.

Commands import torch and the scoring modules inside their functions, so that ``--help`` and every other
command of the app start without them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from musc_online.backbones import WeightsNotFoundError
from musc_online.datasets import DatasetError

if TYPE_CHECKING:
    import torch

METRIC_HEADERS = ("I-AUROC", "I-F1", "I-AP", "P-AUROC", "P-F1", "P-AP", "PRO")  # of metrics.METRIC_KEYS, in order


def int_list(text: str, option: str) -> tuple[int, ...]:
    """Parse '1,3,5' into (1, 3, 5), naming the option when the text is not a list of integers."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        message = f"expected comma-separated integers such as 1,3,5, got {text!r}"
        raise typer.BadParameter(message, param_hint=option) from None
    if not values:
        raise typer.BadParameter("expected at least one integer", param_hint=option)
    return values


def pick_device(name: str) -> torch.device:
    """The device ``--device`` names (see ``musc_online.device``); a GPU torch cannot see is a bad parameter."""
    from musc_online.device import resolve_device

    try:
        return resolve_device(name)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--device") from None


@contextmanager
def clean_errors() -> Iterator[None]:
    """Turn the library's expected failures (bad data, missing weights, bad settings) into one-line exits."""
    try:
        yield
    except (DatasetError, WeightsNotFoundError, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal, or "n/a" for a figure that is not available."""
    return "n/a" if value is None else f"{100 * value:.1f}"


def metrics_table(title: str, first_column: str, rows: Mapping[str, Mapping[str, float | None]]) -> Table:
    """The seven MuSc metrics in %, one row per named set of figures; "n/a" where one is not available
    (pixel metrics of a category without masks)."""
    from musc_online.metrics import METRIC_KEYS

    table = Table(title=title)
    table.add_column(first_column)
    for header in METRIC_HEADERS:
        table.add_column(header, justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *(percent(metrics[key]) for key in METRIC_KEYS))
    return table
