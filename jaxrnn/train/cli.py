"""Shared by the experiment scripts: argparse value types (bad flags fail with a clear message)
and :func:`run_for_script`, the training loop with its errors turned into exit codes.

Exit codes of every script in ``experiments/`` (the one place they are defined):

====  ==========================================================================================
0     success
1     an unexpected internal error (a traceback: a bug to report)
2     bad arguments, bad or missing data (:class:`jaxrnn.data.DataError`), a refused run (the
      output folder is in use, holds another run, or ``--resume`` settings differ), or no
      intact checkpoint to resume from (:class:`jaxrnn.train.CorruptCheckpointError`)
3     the run diverged (:class:`jaxrnn.train.NonFiniteLossError`: NaN/inf or overflowing loss,
      gradient norm or perplexity); the message names the last good checkpoint
4     the operating system refused a write (:class:`jaxrnn.train.CheckpointSaveError` or
      another ``OSError`` while saving: a full disk, permissions); the message names the path
      and the errno, and the earlier checkpoints are intact
====  ==========================================================================================
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jaxrnn.data.errors import DataError
from jaxrnn.train.checkpoint import CheckpointSaveError, CorruptCheckpointError
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
"""Exit code of a script whose loss, gradient norm or perplexity became NaN or infinite."""
EXIT_OS_ERROR = 4
"""Exit code of a script whose output could not be written (full disk, permissions)."""


def exit_code(err: BaseException) -> int | None:
    """The exit code for a known error (see the module docstring), or ``None`` for an
    unexpected one (which should propagate with its traceback)."""
    if isinstance(err, NonFiniteLossError):
        return EXIT_NON_FINITE
    if isinstance(err, CheckpointSaveError):
        return EXIT_OS_ERROR
    if isinstance(err, CorruptCheckpointError | DataError | FileExistsError):
        return EXIT_BAD_INPUT
    return None


def run_for_script(**kwargs: Any) -> tuple[Any, dict[str, Any]] | int:
    """:func:`jaxrnn.train.run_training` for a script's ``main()``: the same keyword arguments.

    Returns ``(state, summary)``, or, after printing the reason to stderr in one line, the
    exit code: :data:`EXIT_NON_FINITE` when the run diverged (the last good checkpoint is
    kept), :data:`EXIT_BAD_INPUT` when ``out_dir`` already holds another run's checkpoints and
    ``resume`` is False or no checkpoint is intact, :data:`EXIT_OS_ERROR` when a checkpoint
    could not be written. Usage::

        result = run_for_script(state=..., train_step=..., ...)
        if isinstance(result, int):
            return result
        state, summary = result
    """
    try:
        return run_training(**kwargs)
    except (NonFiniteLossError, CheckpointSaveError, CorruptCheckpointError,
            FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        code = exit_code(err)
        assert code is not None
        return code
