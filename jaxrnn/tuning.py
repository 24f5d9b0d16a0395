"""Per-platform tuning: the one table every platform-dependent choice of jaxrnn reads.

A choice that depends on the hardware (which strategy ``"auto"`` runs, whether fused inference
projects its input in chunks, whether a weight-gradient matmul gets a row-major copy of its
transposed operand) is made per *lowering* platform, never from the machine that traces
(:func:`per_platform`): a module exported from a CPU for ``platforms=("cuda",)`` or
``("cpu", "cuda", "tpu")`` carries each platform's own choice. Where two platforms' entries
agree, nothing is duplicated. Each platform's variant is traced when the program is lowered,
and only for the platforms it is lowered for. A differentiated choice (a training step) has
entries of its own (the ``_grad`` fields); where they differ between platforms, each variant is
linearized when the program is traced (its residuals must have one type on every platform),
and its backward pass is traced only when the program is lowered for its platform
(:mod:`jaxrnn.platform_choice`).

Each entry names the benchmark that measured it (``source``); the numbers live in
``benchmarks/STRATEGY.md`` (current) and ``benchmarks/STRATEGY_HISTORY.md`` (older machines).
Change an entry by re-running that benchmark on the platform; :func:`jaxrnn.scan` and the
kernels read :data:`TUNING` at trace time, so a changed entry applies to the next trace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from jaxrnn.platform_choice import PLATFORMS, per_platform

__all__ = ["PLATFORMS", "TUNING", "PlatformTuning", "per_platform", "tuning"]


@dataclasses.dataclass(frozen=True)
class PlatformTuning:
    """How jaxrnn runs on one platform.

    Attributes:
        fused_max_batch: cell kind (``"lstm"``, ``"gru"``, the cells with a fused kernel) ->
            the largest float32 batch ``strategy="auto"`` runs fused (``None``: any batch). A
            cell with a reduced-precision ``compute_dtype`` fuses at any batch.
        not_fused: what ``"auto"`` runs when it does not fuse: ``"in_loop"`` (the input
            projection inside the loop) or ``"hoisted"`` (one large projection first).
        fused_max_batch_grad: ``fused_max_batch`` for a scan that is differentiated (a
            training step: ``jax.grad``, ``jax.vjp``, ``jax.jvp``); above it, ``not_fused``.
        not_fused_grad: what a differentiated ``"auto"`` runs for a cell that cannot fuse.
            Where the ``_grad`` choices agree across platforms, a differentiated scan traces one
            strategy, not one per platform (:func:`per_platform`).
        inference_chunk_bytes: fused inference (no gradients) projects the input this many
            bytes of projection at a time, in an outer loop; ``None``: all steps at once.
        tn_copy: ``(min_rows, max_cols)``: a weight-gradient product ``a^T b`` with at least
            ``min_rows`` rows and at most ``max_cols`` columns first makes a row-major copy of
            ``a^T`` (:func:`jaxrnn.kernels.matmul.mm_tn`); ``None``: never.
        source: the benchmark and entry these values come from.
    """

    fused_max_batch: Mapping[str, int | None]
    not_fused: Literal["in_loop", "hoisted"]
    fused_max_batch_grad: Mapping[str, int | None]
    not_fused_grad: Literal["in_loop", "hoisted"]
    inference_chunk_bytes: int | None
    tn_copy: tuple[int, int] | None
    source: str


TUNING: dict[str, PlatformTuning] = {
    "cpu": PlatformTuning(
        fused_max_batch={"lstm": 128, "gru": 32},
        not_fused="in_loop",
        fused_max_batch_grad={"lstm": 128, "gru": None},
        not_fused_grad="in_loop",
        inference_chunk_bytes=2**23,
        tn_copy=(2048, 512),
        source="benchmarks/STRATEGY.md, 'CPU' (benchmarks/rnn_speed.py, benchmarks/step_matmul.py)",
    ),
    "default": PlatformTuning(
        fused_max_batch={"lstm": None, "gru": None},
        not_fused="hoisted",
        fused_max_batch_grad={"lstm": None, "gru": None},
        not_fused_grad="hoisted",
        inference_chunk_bytes=None,
        tn_copy=None,
        source="benchmarks/STRATEGY.md, 'GPU and TPU' (benchmarks/gpu_check.sh; not yet measured "
               "on a GPU or TPU: the defaults of the design)",
    ),
}


def tuning(platform: str) -> PlatformTuning:
    """The entry of :data:`TUNING` for ``platform`` (``"cpu"``, ``"cuda"``, ``"rocm"``,
    ``"tpu"``; a platform without its own entry gets ``"default"``)."""
    if not isinstance(platform, str):
        raise TypeError(f"tuning: platform={platform!r}; expected a platform name such as "
                        f"'cpu', 'cuda', 'rocm' or 'tpu'")
    return TUNING.get(platform, TUNING["default"])
