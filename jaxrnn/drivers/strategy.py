"""Which strategy :func:`jaxrnn.scan` runs: the requested one, or, for ``"auto"``, the one the
platform's entry of :data:`jaxrnn.tuning.TUNING` picks.

``"auto"`` fuses (:mod:`jaxrnn.kernels.fused`) a cell that has a fused kernel, unless its
float32 batch exceeds the platform's ``fused_max_batch`` for that cell kind; otherwise it runs
the platform's ``not_fused`` strategy (``"in_loop"`` on a CPU, ``"hoisted"`` elsewhere). A
differentiated scan (a training step) reads ``fused_max_batch_grad`` and ``not_fused_grad``
instead: on a CPU the GRU trains as fast fused at any batch, so a training step of a GRU makes
the GPU/TPU choice and traces one strategy for all platforms; the LSTM keeps the CPU's limit of
128 and the other cells in_loop, where the alternatives compile more slowly
(``benchmarks/STRATEGY.md``). The
choice is made per lowering platform (:func:`jaxrnn.tuning.per_platform`), so a module traced
on a CPU and exported for a GPU or TPU carries the GPU's or TPU's choice. ``"auto"`` never picks
``"cudnn"``.

``"cudnn"`` is an explicit opt-in, resolved when tracing: ``jax.experimental.rnn`` asks cuDNN
for its workspace sizes while it traces, which needs a CUDA GPU in the tracing process. With
one, a plain float32 LSTM runs cuDNN's kernel; elsewhere (a CPU, a TPU, a ROCm GPU, where
``jax.experimental.rnn`` has no MIOpen lowering) it runs ``"fused"``. Exporting a cuDNN module
(``jax.export``) needs ``disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(
"cudnn_rnn_ffi")]`` (and the same for the backward target) and a GPU at trace time.
"""

from __future__ import annotations

import typing
from typing import Literal

from jaxrnn.cells import base
from jaxrnn.kernels import cudnn, fused
from jaxrnn.tuning import PlatformTuning, tuning

Strategy = Literal["auto", "in_loop", "hoisted", "fused", "cudnn"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)

Resolved = Literal["in_loop", "hoisted", "fused", "cudnn"]


def resolve_strategy(
    strategy: Strategy,
    cell=None,
    resets=None,
    xs_shape: tuple[int, ...] | None = None,
    remat: bool = False,
    time_major: bool = False,
    *,
    platform: str = "cpu",
    differentiated: bool = False,
) -> Resolved:
    """The strategy that runs for this cell and these arguments when lowered for ``platform``.

    "fused" runs the custom-VJP path of ``kernels.fused`` for a plain LSTM or a reset-after GRU
    without ``resets`` and without ``remat``; other cells, ``resets`` or ``remat`` fall back to
    "hoisted" (rematerialisation needs plain autodiff). "auto" reads the platform's entry of
    :data:`jaxrnn.tuning.TUNING` (batch from ``xs_shape``, [B, T, D], or [T, B, D] with
    ``time_major``). "cudnn" runs cuDNN for a plain float32 LSTM when a CUDA GPU is present
    while tracing, and "fused" otherwise (:func:`jaxrnn.scan` also sends it to "fused" when
    ``h_mask`` is given). A cell with only ``step`` always runs "in_loop".

    Args:
        platform: the lowering platform (``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``).
        differentiated: the choice for a scan that is differentiated (a training step): "auto"
            reads the platform's ``fused_max_batch_grad`` (above it, ``not_fused``) and, for a
            cell that cannot fuse, ``not_fused_grad``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy={strategy!r}; expected 'auto', 'in_loop', 'hoisted', 'fused' or 'cudnn'"
        )
    if cell is not None and not base.has_split(cell):
        if strategy == "hoisted":
            raise ValueError(
                f"strategy='hoisted' needs a cell with input_projection and recurrent_step; "
                f"{type(cell).__name__} has only step: use strategy='in_loop' or 'auto'"
            )
        return "in_loop"
    fusable = cell is not None and resets is None and not remat and fused.supports(cell)
    if strategy == "cudnn":
        if fusable and platform in cudnn.PLATFORMS and cudnn.supports(cell) and cudnn.available():
            return "cudnn"
        strategy = "fused"
    if strategy == "fused":
        return "fused" if fusable else "hoisted"
    if strategy == "auto":
        return _auto(tuning(platform), cell, fusable, xs_shape, time_major, differentiated)
    return strategy


def _auto(t: PlatformTuning, cell, fusable: bool, xs_shape, time_major: bool,
          differentiated: bool) -> Resolved:
    if not fusable:
        return t.not_fused_grad if differentiated else t.not_fused
    limits = t.fused_max_batch_grad if differentiated else t.fused_max_batch
    limit = limits.get(fused.kind(cell))
    batch = None if xs_shape is None else xs_shape[1 if time_major else 0]
    narrow = getattr(cell, "compute_dtype", None) is not None
    if limit is None or batch is None or batch <= limit or narrow:
        return "fused"
    return t.not_fused
