"""Per-platform tuning: the one table every platform-dependent choice of jaxrnn reads.

A choice that depends on the hardware (which strategy ``"auto"`` runs, whether fused inference
projects its input in chunks, whether a weight-gradient matmul gets a row-major copy of its
transposed operand) is made per *lowering* platform, never from the machine that traces:
the code traces each platform's variant and joins them with ``jax.lax.platform_dependent``,
so a module exported from a CPU for ``platforms=("cuda",)`` or ``("cpu", "cuda", "tpu")``
carries each platform's own choice (:func:`per_platform`). Where two platforms' entries agree,
nothing is duplicated.

Each entry names the benchmark that measured it (``source``); the numbers live in
``benchmarks/STRATEGY.md`` (current) and ``benchmarks/STRATEGY_HISTORY.md`` (older machines).
Change an entry by re-running that benchmark on the platform; :func:`jaxrnn.scan` and the
kernels read :data:`TUNING` at trace time, so a changed entry applies to the next trace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax

PLATFORMS: tuple[str, ...] = ("cpu", "cuda", "rocm", "tpu")
"""The lowering platforms with an entry in :data:`TUNING` (others use ``"default"``)."""


@dataclasses.dataclass(frozen=True)
class PlatformTuning:
    """How jaxrnn runs on one platform.

    Attributes:
        fused_max_batch: cell kind (``"lstm"``, ``"gru"``, the cells with a fused kernel) ->
            the largest float32 batch ``strategy="auto"`` runs fused (``None``: any batch). A
            cell with a reduced-precision ``compute_dtype`` fuses at any batch.
        not_fused: what ``"auto"`` runs when it does not fuse: ``"in_loop"`` (the input
            projection inside the loop) or ``"hoisted"`` (one large projection first).
        inference_chunk_bytes: fused inference (no gradients) projects the input this many
            bytes of projection at a time, in an outer loop; ``None``: all steps at once.
        tn_copy: ``(min_rows, max_cols)``: a weight-gradient product ``a^T b`` with at least
            ``min_rows`` rows and at most ``max_cols`` columns first makes a row-major copy of
            ``a^T`` (:func:`jaxrnn.kernels.matmul.mm_tn`); ``None``: never.
        source: the benchmark and entry these values come from.
    """

    fused_max_batch: Mapping[str, int | None]
    not_fused: Literal["in_loop", "hoisted"]
    inference_chunk_bytes: int | None
    tn_copy: tuple[int, int] | None
    source: str


TUNING: dict[str, PlatformTuning] = {
    "cpu": PlatformTuning(
        fused_max_batch={"lstm": 128, "gru": 32},
        not_fused="in_loop",
        inference_chunk_bytes=2**23,
        tn_copy=(2048, 512),
        source="benchmarks/STRATEGY.md, 'CPU' (benchmarks/rnn_speed.py, benchmarks/step_matmul.py)",
    ),
    "default": PlatformTuning(
        fused_max_batch={"lstm": None, "gru": None},
        not_fused="hoisted",
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


def per_platform(make: Callable[[str], Callable[..., Any]], *args: Any) -> Any:
    """``make(p)(*args)`` for the platform ``p`` the computation is lowered for.

    ``make`` maps a platform name (one of :data:`PLATFORMS`, or ``"default"`` for any other)
    to a function of ``args``; read the platform's entry with :func:`tuning`. Platforms whose
    functions are the same object (return one function for equal choices) share one branch;
    when every platform agrees, the function is called directly and nothing
    platform-dependent enters the program. Otherwise the variants are joined with
    ``jax.lax.platform_dependent``: each is traced, and lowering keeps the one for each target
    platform (all of them, behind a platform index, in a multi-platform ``jax.export``).
    """
    default = make("default")
    own = {p: fn for p in PLATFORMS if (fn := make(p)) is not default}
    if not own:
        return default(*args)
    return jax.lax.platform_dependent(*args, default=default, **own)
