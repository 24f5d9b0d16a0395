"""Shared by the experiment scripts: argparse value types (bad flags fail with a clear message)
and :func:`run_for_script`, the training loop with its errors turned into exit codes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jaxrnn.train.loop import NonFiniteLossError, run_training


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return value


def positive_float(text: str) -> float:
    """A float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {value}")
    return value


def rate(text: str) -> float:
    """A dropout rate in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1); got {value}")
    return value


def fraction(text: str) -> float:
    """A held-out fraction in [0, 0.5)."""
    value = float(text)
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"must lie in [0, 0.5); got {value}")
    return value


EXIT_BAD_INPUT = 2
"""Exit code of a script for bad data or arguments (argparse's own code for bad flags)."""
EXIT_NON_FINITE = 3
"""Exit code of a script whose loss or gradient norm became NaN or infinite."""


def run_for_script(**kwargs: Any) -> tuple[Any, dict[str, Any]] | int:
    """:func:`jaxrnn.train.run_training` for a script's ``main()``: the same keyword arguments.

    Returns ``(state, summary)``, or, after printing the reason to stderr, the exit code:
    :data:`EXIT_NON_FINITE` when the loss became NaN/inf (the last good checkpoint is kept),
    :data:`EXIT_BAD_INPUT` when ``out_dir`` already holds another run's checkpoints and
    ``resume`` is False. Usage::

        result = run_for_script(state=..., train_step=..., ...)
        if isinstance(result, int):
            return result
        state, summary = result
    """
    try:
        return run_training(**kwargs)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NON_FINITE
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
