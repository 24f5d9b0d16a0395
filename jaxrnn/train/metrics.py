"""Run logs: a crash-safe JSON-lines metrics file, TensorBoard scalars, curves, progress bar.

:class:`MetricsLog` is the record of a run. Each line is written, flushed and fsynced
before the next step goes on, and a resumed run cuts the file back to the number of lines
its checkpoint saw, so after any crash and resume the file holds each record exactly once.

:class:`TensorBoardLog`, :func:`plot_curves` and :class:`ProgressBar` use tensorboardX, matplotlib
and tqdm, which jaxrnn installs with its ``experiments`` extra (``pip install
"jaxrnn[experiments]"``); they are imported when first used, and a missing one raises an
``ImportError`` that names the extra.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MetricsLog", "ProgressBar", "TensorBoardLog", "perplexity", "plot_curves",
           "read_metrics"]

_MAX_EXP_ARG = math.log(sys.float_info.max)  # 709.78...: exp of more overflows a float


def perplexity(loss: float) -> float:
    """``exp(loss)`` for a mean per-token negative log-likelihood ``loss`` in nats.

    Never raises: a loss beyond ``log(float max)`` (about 709.78) gives ``inf``, a NaN loss
    gives NaN (``math.exp`` would raise ``OverflowError`` on the former).
    """
    loss = float(loss)
    if math.isnan(loss):
        return math.nan
    return math.exp(loss) if loss <= _MAX_EXP_ARG else math.inf


def _require(module: str, user: str) -> Any:
    """Imports ``module`` (a package of the ``experiments`` extra) for ``user``, or raises an
    ImportError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise ImportError(
            f"{user} needs {package}, which is not installed; it comes with jaxrnn's "
            f"'experiments' extra: pip install \"jaxrnn[experiments]\" (or pip install {package})"
        ) from error


def _to_json(value: Any) -> Any:
    """Python scalars from numpy/jax scalars, recursively through dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    array = np.asarray(value)
    if array.ndim == 0:
        if np.issubdtype(array.dtype, np.bool_):
            return bool(array)
        if np.issubdtype(array.dtype, np.integer):
            return int(array)
        return float(array)
    return array.tolist()


def _complete_lines(path: Path) -> list[bytes]:
    """The file's lines that end in a newline and parse as JSON, up to the first bad one."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_bytes().split(b"\n")[:-1]:  # the last piece has no newline
        try:
            json.loads(raw)
        except ValueError:
            break
        lines.append(raw + b"\n")
    return lines


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete records of a metrics.jsonl file (a torn last line is skipped)."""
    return [json.loads(line) for line in _complete_lines(Path(path))]


class MetricsLog:
    """Appends one JSON object per line to a file, durably.

    Every :meth:`write` flushes and ``os.fsync``\\ s the line, so a line that
    :attr:`lines_written` counts survives a crash.

    Args:
        path: the metrics file (conventionally ``<out_dir>/metrics.jsonl``); its folder is
            created if missing.
        resume_lines: ``None`` keeps every complete line already in the file and appends
            after them. An int ``n`` keeps exactly the first ``n`` complete lines — the
            count stored with the checkpoint a run resumes from — and drops everything
            after (lines of steps that will be replayed, a torn last line). ``0`` starts
            an empty file. The kept lines are rewritten atomically (temporary file, fsync,
            ``os.replace``).

    Raises:
        ValueError: if the file has fewer than ``resume_lines`` complete lines (the log
            and the checkpoint disagree).
    """

    def __init__(self, path: str | os.PathLike, *, resume_lines: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existing = _complete_lines(self.path)
        if resume_lines is None:
            keep = existing
        else:
            if not isinstance(resume_lines, int) or resume_lines < 0:
                raise ValueError(
                    f"MetricsLog: resume_lines must be None or an int >= 0; got "
                    f"{resume_lines!r}"
                )
            if len(existing) < resume_lines:
                raise ValueError(
                    f"MetricsLog: {self.path} has {len(existing)} complete lines but "
                    f"resume_lines={resume_lines}; the metrics file is older than the "
                    "checkpoint being resumed"
                )
            keep = existing[:resume_lines]
        raw = b"".join(keep)
        if not self.path.exists() or self.path.read_bytes() != raw:
            self._rewrite(raw)
        self._lines = len(keep)
        self._file = open(self.path, "ab")

    def _rewrite(self, raw: bytes) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def lines_written(self) -> int:
        """Number of complete lines in the file (kept ones plus written ones)."""
        return self._lines

    def write(self, record: Mapping[str, Any]) -> None:
        """Appends ``record`` as one JSON line, then flushes and fsyncs.

        Args:
            record: a dict; numpy/jax scalars are converted to Python numbers.
        """
        line = json.dumps(_to_json(record)) + "\n"
        self._file.write(line.encode())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._lines += 1

    def close(self) -> None:
        """Closes the file."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class TensorBoardLog:
    """TensorBoard scalars through ``tensorboardX.SummaryWriter``.

    Args:
        logdir: event-file folder.
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        tensorboardx = _require("tensorboardX", "TensorBoardLog")
        self._writer = tensorboardx.SummaryWriter(logdir=str(logdir))

    def scalars(self, step: int, values: Mapping[str, Any], *, prefix: str = "") -> None:
        """Writes each numeric entry of ``values`` as ``<prefix>/<name>`` at ``step``."""
        for name, value in values.items():
            if isinstance(value, bool | str) or value is None:
                continue
            tag = f"{prefix}/{name}" if prefix else name
            self._writer.add_scalar(tag, float(value), int(step))

    def flush(self) -> None:
        """Flushes pending events to disk."""
        self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the writer."""
        self._writer.close()


def plot_curves(
    metrics_path: str | os.PathLike,
    png_path: str | os.PathLike,
    *,
    key: str = "ppl",
    x: str = "epoch",
    splits: Iterable[str] = ("train", "valid"),
    title: str | None = None,
) -> Path:
    """Plots ``key`` against ``x`` for each split of a metrics.jsonl file into a PNG.

    Uses matplotlib's Agg canvas directly (no global backend switch, no display needed).
    A log y axis is used for ``key="ppl"``.

    Args:
        metrics_path: the JSON-lines file written by :class:`MetricsLog`.
        png_path: where to write the figure.
        key: the y value, e.g. ``"ppl"`` or ``"loss"``.
        x: the x value, e.g. ``"epoch"`` or ``"step"``.
        splits: the ``"split"`` values to draw, one line each.
        title: optional figure title.

    Returns:
        ``png_path`` as a ``Path``.

    Raises:
        ValueError: if no record of the given splits has both ``x`` and ``key``.
    """
    FigureCanvasAgg = _require("matplotlib.backends.backend_agg", "plot_curves").FigureCanvasAgg
    Figure = _require("matplotlib.figure", "plot_curves").Figure

    records = read_metrics(metrics_path)
    splits = tuple(splits)
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for split in splits:
        points = [
            (r[x], r[key]) for r in records
            if r.get("split") == split and x in r and key in r and math.isfinite(r[key])
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 50 else None, label=split)
            drawn += 1
    if drawn == 0:
        raise ValueError(
            f"plot_curves: {metrics_path} has no finite {key!r} against {x!r} for splits "
            f"{splits}"
        )
    if key == "ppl":
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(key)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    return png_path


class ProgressBar:
    """A tqdm bar over training steps showing tokens/s, loss, perplexity and ETA.

    ``tok/s`` is the latest train line's ``tokens_per_sec`` (the definition in
    :mod:`jaxrnn.train.loop`: timed updates only, compilation, evaluation and saving
    excluded). tqdm's own ``step/s`` and ETA are its smoothed rate of all steps, evaluation
    and saving included.

    Args:
        total: total number of steps of the run.
        initial: steps already done (a resumed run).
        disable: ``True`` hides it; ``None`` (default) hides it unless stderr is a tty.
        desc: label in front of the bar.

    Raises:
        ImportError: if the bar is to be shown and tqdm is not installed (a hidden bar needs
            no tqdm).
    """

    def __init__(self, total: int, *, initial: int = 0, disable: bool | None = None,
                 desc: str = "train") -> None:
        if disable is None:
            disable = not sys.stderr.isatty()
        if disable:
            self._bar = _HiddenBar()
            return
        tqdm = _require("tqdm.auto", "ProgressBar").tqdm
        self._bar = tqdm(total=total, initial=initial, disable=disable, desc=desc,
                         unit="step", dynamic_ncols=True, leave=True)

    def update(self, steps: int = 1) -> None:
        """Advances the bar by ``steps``."""
        self._bar.update(steps)

    def set_metrics(self, *, loss: float | None = None, ppl: float | None = None,
                    tokens_per_sec: float | None = None, epoch: float | None = None) -> None:
        """Shows the latest values next to the bar (tqdm adds rate and ETA)."""
        shown = {}
        if epoch is not None:
            shown["epoch"] = f"{epoch:.2f}"
        if loss is not None:
            shown["loss"] = f"{loss:.4f}"
        if ppl is not None:
            shown["ppl"] = f"{ppl:.2f}"
        if tokens_per_sec is not None:
            shown["tok/s"] = f"{tokens_per_sec:,.0f}"
        self._bar.set_postfix(shown, refresh=False)

    def write(self, message: str) -> None:
        """Prints a line above the bar."""
        self._bar.write(message)

    def close(self) -> None:
        """Closes the bar."""
        self._bar.close()


class _HiddenBar:
    """What a hidden :class:`ProgressBar` drives: nothing is shown, messages are printed."""

    def update(self, steps: int = 1) -> None:
        del steps

    def set_postfix(self, shown: Mapping[str, str], refresh: bool = False) -> None:
        del shown, refresh

    def write(self, message: str) -> None:
        print(message)  # as tqdm.write does: to stdout

    def close(self) -> None:
        pass
