"""Small helpers every ``musc-online`` command shares: list options, device choice, clean failures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import typer

from musc_online.backbones import WeightsNotFoundError
from musc_online.datasets import DatasetError


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
    """'auto' takes the GPU when CUDA is present, else the CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("CUDA was asked for but no GPU is visible to torch", param_hint="--device")
    return device


@contextmanager
def clean_errors() -> Iterator[None]:
    """Turn the library's expected failures (bad data, missing weights, bad settings) into one-line exits."""
    try:
        yield
    except (DatasetError, WeightsNotFoundError, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
