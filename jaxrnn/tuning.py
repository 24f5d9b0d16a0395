"""Per-platform tuning: the one table every platform-dependent choice of jaxrnn reads.

A choice that depends on the hardware (which strategy ``"auto"`` runs, whether fused inference
projects its input in chunks, whether a weight-gradient matmul gets a row-major copy of its
transposed operand) is made per *lowering* platform, never from the machine that traces
(:func:`per_platform`): a module exported from a CPU for ``platforms=("cuda",)`` or
``("cpu", "cuda", "tpu")`` carries each platform's own choice. Where two platforms' entries
agree, nothing is duplicated. Each platform's variant is traced when the program is lowered,
and only for the platforms it is lowered for. A differentiated choice (a training step) has
entries of its own (the ``_grad`` fields); where they differ between platforms, every variant
is traced at once (``jax.lax.platform_dependent``), as each platform needs its derivative.

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
from jax.extend import core as jex_core
from jax.interpreters import ad, batching, mlir

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


def per_platform(make: Callable[[str], Callable[..., Any]], *args: Any,
                 out_shape: Any = None,
                 make_grad: Callable[[str], Callable[..., Any]] | None = None) -> Any:
    """``make(p)(*args)`` for the platform ``p`` the computation is lowered for.

    ``make`` maps a platform name (one of :data:`PLATFORMS`, or ``"default"`` for any other)
    to a function of ``args`` (pytrees of arrays; the function must not close over traced
    values); read the platform's entry with :func:`tuning`. Platforms whose functions are the
    same object (return one function for equal choices) share one branch; when every platform
    agrees, the function is called directly and nothing platform-dependent enters the program.

    Otherwise the call is staged out as one operation whose variant is chosen when the program
    is lowered: lowering for one platform traces that platform's function alone; a
    multi-platform lowering (``jax.export`` with several ``platforms``) traces one per distinct
    choice and joins them with ``jax.lax.platform_dependent``. Run eagerly, the function of the
    default device's platform runs. Differentiated, the variants of ``make_grad`` are traced
    at once, joined with ``jax.lax.platform_dependent`` where they differ (each platform needs
    its own derivative); under ``jax.vmap`` each variant is vmapped.

    Args:
      make: platform name -> function of ``args``.
      *args: the functions' arguments.
      out_shape: the result's structure as a pytree of ``jax.ShapeDtypeStruct``, or a function
        of ``args`` returning it (it may read only their shapes and dtypes); None traces the
        default function once to find it. Every platform's function must return exactly
        this structure.
      make_grad: like ``make``, the variants a differentiated call runs (the same
        computation, e.g. another strategy); None: ``make``'s.
    """
    names = (*PLATFORMS, "default")
    forward = {name: make(name) for name in names}
    grad = forward if make_grad is None else {name: make_grad(name) for name in names}
    default = forward["default"]
    if all(fn is default for fn in (*forward.values(), *grad.values())):
        return default(*args)
    flat, in_tree = jax.tree.flatten(args)
    if callable(out_shape):
        out_shape = out_shape(*args)
    elif out_shape is None:
        out_shape = jax.eval_shape(default, *args)
    out_leaves, out_tree = jax.tree.flatten(out_shape)
    out_avals = tuple(jax.core.ShapedArray(leaf.shape, leaf.dtype) for leaf in out_leaves)

    def flat_functions(variants):
        served: dict[int, list[str]] = {}
        for name, fn in variants.items():
            served.setdefault(id(fn), []).append(name)
        wrapped = {key: _flat_function(variants[shared[0]], "/".join(shared), in_tree, out_tree,
                                       out_avals) for key, shared in served.items()}
        return {name: wrapped[id(fn)] for name, fn in variants.items()}

    flat_forward = flat_functions(forward)
    flat_grad = flat_forward if grad is forward else flat_functions(grad)
    choice = _Choice(flat_forward, flat_grad, out_avals)
    return jax.tree.unflatten(out_tree, _per_platform_p.bind(*flat, choice=choice))


def _flat_function(fn, name, in_tree, out_tree, out_avals):
    """``fn`` (the variant of the platforms ``name``) on flat arrays, checking that it returns
    the structure of ``out_shape``."""
    want = tuple((a.shape, a.dtype) for a in out_avals)

    def run(*leaves):
        leaves_out, tree = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, leaves)))
        got = tuple((tuple(a.shape), a.dtype) for a in leaves_out)
        if tree != out_tree or got != want:
            raise TypeError(f"jaxrnn.tuning.per_platform: the {name!r} variant returned {tree} "
                            f"with (shape, dtype) {got}; expected {out_tree} with {want} "
                            f"(out_shape)")
        return leaves_out

    return run


class _Choice:
    """The variants of one :func:`per_platform` call: platform name (and ``"default"``) ->
    function of the flat arguments, one object per distinct variant, for the forward pass
    (``functions``) and for differentiation (``grad_functions``). Hashed by identity: each call
    is its own staged operation."""

    def __init__(self, functions, grad_functions, out_avals: tuple):
        self.functions, self.grad_functions = functions, grad_functions
        self.out_avals = out_avals

    def variant(self, platform: str) -> Callable[..., list[Any]]:
        return self.functions.get(platform, self.functions["default"])

    def joined(self, platforms=None, grad: bool = False) -> Callable[..., list[Any]]:
        """One function of the variants for ``platforms`` (None: all), through
        ``jax.lax.platform_dependent`` where they differ."""
        functions = self.grad_functions if grad else self.functions
        default = functions["default"]
        names = PLATFORMS if platforms is None else [p for p in platforms if p in PLATFORMS]
        branches = {p: fn for p in names if (fn := functions[p]) is not default}
        if not branches:
            return default
        return lambda *leaves: jax.lax.platform_dependent(*leaves, default=default, **branches)

    def vmapped(self, in_axes, size: int) -> _Choice:
        mapped: dict[int, Callable[..., list[Any]]] = {}

        def vmap_all(functions):
            for fn in functions.values():
                mapped.setdefault(id(fn), jax.vmap(fn, in_axes))
            return {p: mapped[id(fn)] for p, fn in functions.items()}

        out_avals = tuple(jax.core.ShapedArray((size, *a.shape), a.dtype) for a in self.out_avals)
        return _Choice(vmap_all(self.functions), vmap_all(self.grad_functions), out_avals)


_per_platform_p = jex_core.Primitive("jaxrnn_per_platform")
_per_platform_p.multiple_results = True


@_per_platform_p.def_impl
def _per_platform_impl(*leaves, choice):
    return choice.joined()(*leaves)  # eagerly, platform_dependent runs the device's variant


@_per_platform_p.def_abstract_eval
def _per_platform_abstract_eval(*avals, choice):
    return choice.out_avals


def _per_platform_lowering(ctx, *leaves, choice):
    platforms = tuple(ctx.platforms or ctx.module_context.platforms)
    fn = choice.variant(platforms[0]) if len(platforms) == 1 else choice.joined(platforms)
    return mlir.lower_fun(fn, multiple_results=True)(ctx, *leaves)


def _per_platform_jvp(primals, tangents, *, choice):
    tangents = [ad.instantiate_zeros(t) for t in tangents]
    return jax.jvp(choice.joined(grad=True), tuple(primals), tuple(tangents))


def _per_platform_batch(leaves, dims, *, choice):
    size = next(x.shape[d] for x, d in zip(leaves, dims, strict=True) if d is not None)
    outs = _per_platform_p.bind(*leaves, choice=choice.vmapped(tuple(dims), size))
    return outs, [0] * len(outs)


mlir.register_lowering(_per_platform_p, _per_platform_lowering)
ad.primitive_jvps[_per_platform_p] = _per_platform_jvp
batching.primitive_batchers[_per_platform_p] = _per_platform_batch
