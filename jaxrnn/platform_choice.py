"""A choice made per lowering platform: :func:`per_platform`.

``per_platform(make, *args)`` computes ``make(p)(*args)`` for the platform ``p`` a program is
lowered for, not for the machine that traces it, so a module exported from a CPU for
``platforms=("cuda",)`` or ``("cpu", "cuda", "tpu")`` carries each platform's own variant.
The call is staged out as one operation, ``jaxrnn_per_platform`` in a jaxpr, whose variant is
traced when the program is lowered, for the lowered platforms only.

Differentiated in reverse mode (``jax.grad``, ``jax.vjp``, a training step), each distinct
variant is linearized when the program is traced, since the residuals the forward pass keeps
for the backward pass must have one type on every platform: where the variants' residuals
differ they get slots of their own, which the other platforms' variants fill with zeros. The
forward pass and the backward pass (the transposition) are staged out again, so the backward
pass of a variant is traced only when the program is lowered for its platform. Forward-mode AD
(``jax.jvp``, and ``jax.linearize``, whose linear map runs forwards) and differentiation through
``jax.checkpoint`` (which differentiates its body with forward-mode rules) trace every variant's
derivative at once (``jax.lax.platform_dependent``): correct, but each is traced and lowered.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core
from jax.interpreters import ad, batching, mlir

try:  # JAX's hook for a primitive's own linearization (used by jax.grad and jax.vjp)
    from jax._src.interpreters.ad import fallback_linearize_rule as _fallback_linearize_rule
    from jax._src.interpreters.ad import primitive_linearizations as _primitive_linearizations

    if "_is_vjp" not in inspect.signature(_fallback_linearize_rule).parameters:
        _primitive_linearizations = None  # an older rule signature
except ImportError:  # pragma: no cover
    _primitive_linearizations = None
# Without the hook, reverse mode goes through the JVP rule, as jax.jvp does: correct, but
# every variant's derivative is traced and lowered as a branch.

PLATFORMS: tuple[str, ...] = ("cpu", "cuda", "rocm", "tpu")
"""The lowering platforms with an entry in :data:`jaxrnn.tuning.TUNING` (others use
``"default"``)."""


def per_platform(make: Callable[[str], Callable[..., Any]], *args: Any,
                 out_shape: Any = None,
                 make_grad: Callable[[str], Callable[..., Any]] | None = None,
                 always_differentiate: tuple[int, ...] = ()) -> Any:
    """``make(p)(*args)`` for the platform ``p`` the computation is lowered for.

    ``make`` maps a platform name (one of :data:`PLATFORMS`, or ``"default"`` for any other)
    to a function of ``args`` (pytrees of arrays; the function must not close over traced
    values); read the platform's entry with :func:`jaxrnn.tuning.tuning`. Platforms whose
    functions are the same object (return one function for equal choices) share one branch;
    when every platform agrees, the function is called directly and nothing platform-dependent
    enters the program.

    Otherwise the call is staged out as one operation whose variant is chosen when the program
    is lowered: lowering for one platform traces that platform's function alone; a
    multi-platform lowering (``jax.export`` with several ``platforms``) traces one per distinct
    choice and joins them with ``jax.lax.platform_dependent``. Run eagerly, the function of the
    default device's platform runs. Under ``jax.vmap`` each variant is vmapped.

    Differentiated, the variants of ``make_grad`` run. In reverse mode (``jax.grad``,
    ``jax.vjp``) each distinct one is linearized when the program is traced and its backward
    pass is traced only when it is lowered for that variant's platforms (module docstring);
    ``jax.jvp``, ``jax.linearize`` and a ``jax.checkpoint`` around the call trace every
    variant's derivative at once.

    Args:
      make: platform name -> function of ``args``.
      *args: the functions' arguments.
      out_shape: the result's structure as a pytree of ``jax.ShapeDtypeStruct``, or a function
        of ``args`` returning it (it may read only their shapes and dtypes); None traces the
        default function once to find it. Every platform's function must return exactly
        this structure.
      make_grad: like ``make``, the variants a differentiated call runs (the same
        computation, e.g. another strategy); None: ``make``'s.
      always_differentiate: positions in ``args`` that reverse mode linearizes the variants
        in even where nothing differentiated flows into them (their cotangents are dropped).
        For a scan's initial carry this is free and halves the cost of linearizing the scan:
        with a carry whose tangent is known to be nonzero, ``jax.lax.scan`` linearizes its
        body once instead of searching for a fixed point in two passes.
    """
    if any(not 0 <= i < len(args) for i in always_differentiate):
        raise ValueError(f"jaxrnn.tuning.per_platform: always_differentiate="
                         f"{always_differentiate!r}; expected positions of the {len(args)} args")
    names = (*PLATFORMS, "default")
    forward = {name: make(name) for name in names}
    grad = forward if make_grad is None else {name: make_grad(name) for name in names}
    if (only := _only_function(forward, grad)) is not None:
        return only(*args)
    default = forward["default"]
    flat, in_tree = jax.tree.flatten(args)
    marked = tuple(i in always_differentiate for i, arg in enumerate(args)
                   for _ in jax.tree.leaves(arg))
    if callable(out_shape):
        out_shape = out_shape(*args)
    elif out_shape is None:
        out_shape = jax.eval_shape(default, *args)
    out_leaves, out_tree = jax.tree.flatten(out_shape)
    out_avals = tuple(jax.core.ShapedArray(leaf.shape, leaf.dtype) for leaf in out_leaves)

    def flat_functions(variants):
        wrapped = {key: _flat_function(fn, "/".join(names), in_tree, out_tree, out_avals)
                   for key, (fn, names) in _shared(variants).items()}
        return {name: wrapped[id(fn)] for name, fn in variants.items()}

    flat_forward = flat_functions(forward)
    flat_grad = flat_forward if grad is forward else flat_functions(grad)
    choice = _Choice(flat_forward, flat_grad, out_avals, marked)
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
    (``functions``) and for differentiation (``grad_functions``); ``always_differentiate``
    marks the flat arguments reverse mode linearizes in whatever their tangents. Hashed by
    identity: each call is its own staged operation."""

    def __init__(self, functions, grad_functions, out_avals: tuple,
                 always_differentiate: tuple[bool, ...] = ()):
        self.functions, self.grad_functions = functions, grad_functions
        self.out_avals = out_avals
        self.always_differentiate = always_differentiate

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

    def call(self, *leaves) -> list[Any]:
        """The variants on ``leaves``: staged out, unless every platform runs one function."""
        if (only := _only_function(self.functions, self.grad_functions)) is not None:
            return only(*leaves)
        return _per_platform_p.bind(*leaves, choice=self)

    def vmapped(self, in_axes, size: int) -> _Choice:
        mapped: dict[int, Callable[..., list[Any]]] = {}

        def vmap_all(functions):
            for fn in functions.values():
                mapped.setdefault(id(fn), jax.vmap(fn, in_axes))
            return {p: mapped[id(fn)] for p, fn in functions.items()}

        out_avals = tuple(jax.core.ShapedArray((size, *a.shape), a.dtype) for a in self.out_avals)
        return _Choice(vmap_all(self.functions), vmap_all(self.grad_functions), out_avals,
                       self.always_differentiate)


def _only_function(*tables: dict[str, Callable]) -> Callable | None:
    """The one function every platform of these platform -> function tables runs, if any."""
    only = tables[0]["default"]
    return only if all(fn is only for table in tables for fn in table.values()) else None


def _shared(functions: dict[str, Callable]) -> dict[int, tuple[Callable, list[str]]]:
    """The distinct functions of a platform -> function table, with the platforms of each."""
    out: dict[int, tuple[Callable, list[str]]] = {}
    for name, fn in functions.items():
        out.setdefault(id(fn), (fn, []))[1].append(name)
    return out


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


# Reverse mode. The linearization of a staged choice is two staged choices: the forward pass
# (outputs and residuals) and the backward pass (residuals and output cotangents -> input
# cotangents), tied together by a linear operation, _linear_p, that exists only in the linear
# program JAX transposes and whose transposition is the backward choice.


def _inexact(aval) -> bool:
    return bool(jnp.issubdtype(aval.dtype, jnp.inexact))


def _of(fn, leaves, wrt):
    """``fn`` as a function of ``leaves[i] for i in wrt``, the other leaves held fixed."""
    def of_wrt(*values):
        full = list(leaves)
        for i, value in zip(wrt, values, strict=True):
            full[i] = value
        return fn(*full)

    return of_wrt


def _traced_vjp(fn, primals, wrt):
    """``jax.vjp`` of ``fn`` in the inputs ``wrt``, as a program: a ``ClosedJaxpr`` from the
    leaves to the outputs followed by the residuals, and the residuals' tree (the vjp
    function's), which rebuilds the vjp function from them."""
    trees = []

    def forward(*leaves):
        outs, vjp_fn = jax.vjp(_of(fn, leaves, wrt), *(leaves[i] for i in wrt))
        residuals, tree = jax.tree.flatten(vjp_fn)
        trees.append(tree)
        return [*outs, *residuals]

    return jax.make_jaxpr(forward)(*primals), trees[0]  # their full types (e.g. varying axes)


def _residual_slots(residual_avals: dict[int, list]) -> tuple[tuple, dict[int, list[int]]]:
    """One tuple of residual slots for all variants: each variant's residuals are placed in
    slots of their type (shape, dtype, sharding, varying manual axes), sharing those of the
    other variants where they can."""
    slots: list = []
    where: dict[int, list[int]] = {}
    for key, avals in residual_avals.items():
        taken: set[int] = set()
        where[key] = []
        for aval in avals:
            slot = next((s for s, have in enumerate(slots) if s not in taken and have == aval),
                        None)
            if slot is None:
                slots.append(aval)
                slot = len(slots) - 1
            taken.add(slot)
            where[key].append(slot)
    return tuple(slots), where


def _forward_with_residuals(closed, n_out: int, where: list[int], slots: tuple):
    """The traced vjp's forward pass, its residuals placed in ``slots`` (zeros elsewhere)."""
    def run(*leaves):
        values = jex_core.jaxpr_as_fun(closed)(*leaves)
        placed: list[Any] = [None] * len(slots)
        for slot, value in zip(where, values[n_out:], strict=True):
            placed[slot] = value
        # zeros of the slot's full type (its sharding and varying manual axes included)
        return [*values[:n_out], *(ad.instantiate_zeros(ad.Zero(a)) if value is None else value
                                   for value, a in zip(placed, slots, strict=True))]

    return run


def _backward(tree, where: list[int], n_slots: int, out_avals: tuple, out_nz: list[bool]):
    """Residual slots and the cotangents of the differentiable outputs -> the cotangents of
    the inputs differentiated, through the vjp function rebuilt from its residuals."""
    def run(*args):
        slots, cts = args[:n_slots], iter(args[n_slots:])
        vjp_fn = jax.tree.unflatten(tree, [slots[s] for s in where])
        out_cts = [next(cts) if nz else np.zeros(a.shape, jax.dtypes.float0)
                   for a, nz in zip(out_avals, out_nz, strict=True)]
        return list(vjp_fn(out_cts))

    return run


class _Linear:
    """What a linear operation of a linearized :func:`per_platform` call transposes to."""

    def __init__(self, backward: _Choice, n_res: int, out_types: tuple, out_nz: list[bool]):
        self.backward, self.n_res = backward, n_res
        self.tangent_avals = tuple(a.to_tangent_aval()
                                   for a, nz in zip(out_types, out_nz, strict=True) if nz)


def _per_platform_linearize(is_vjp, nonzeros, *primals, choice):
    if not is_vjp:  # jax.linearize evaluates its linear map forwards: the JVP rule's way
        return _fallback_linearize_rule(_per_platform_p, is_vjp, nonzeros, *primals,
                                        choice=choice)
    marked = choice.always_differentiate or (False,) * len(primals)
    wrt = [i for i, (nz, always) in enumerate(zip(nonzeros, marked, strict=True))
           if (nz or always) and _inexact(jax.typeof(primals[i]))]
    out_avals = choice.out_avals
    out_nz = [_inexact(a) for a in out_avals]
    variants = _shared(choice.grad_functions)
    if len(variants) == 1:  # every platform differentiates one function: no staging
        ((fn, names),) = variants.values()
        outs, vjp_fn = jax.vjp(_of(fn, primals, wrt), *(primals[i] for i in wrt))
        residuals, tree = jax.tree.flatten(vjp_fn)
        n = len(residuals)
        run = _backward(tree, list(range(n)), n, out_avals, out_nz)
        backward = {name: run for name in names}
        out_types = tuple(map(jax.typeof, outs))
    else:
        traced = {key: _traced_vjp(fn, primals, wrt) for key, (fn, _) in variants.items()}
        n_out = len(out_avals)
        # the outputs' full types (varying manual axes under jax.shard_map included)
        out_types = next(iter(traced.values()))[0].out_avals[:n_out]
        slots, where = _residual_slots(
            {key: closed.out_avals[n_out:] for key, (closed, _) in traced.items()})
        forward, backward = {}, {}
        for key, (_, names) in variants.items():
            closed, tree = traced[key]
            run_forward = _forward_with_residuals(closed, n_out, where[key], slots)
            run_backward = _backward(tree, where[key], len(slots), out_avals, out_nz)
            for name in names:
                forward[name], backward[name] = run_forward, run_backward
        values = _Choice(forward, forward, (*out_types, *slots)).call(*primals)
        outs, residuals = values[:n_out], values[n_out:]
    ct_avals = tuple(jax.typeof(primals[i]).to_tangent_aval() for i in wrt)
    linear = _Linear(_Choice(backward, backward, ct_avals), len(residuals), out_types, out_nz)

    def linearized(residuals, *tangents):
        tangents_in = (ad.instantiate_zeros(tangents[i]) for i in wrt)  # a marked one may be zero
        nz_tangents = _linear_p.bind(*residuals, *tangents_in, linear=linear)
        it = iter(nz_tangents)
        return [next(it) if nz else ad.Zero(a.to_tangent_aval())
                for a, nz in zip(out_avals, out_nz, strict=True)]

    return outs, out_nz, residuals, linearized


_linear_p = jex_core.Primitive("jaxrnn_per_platform_linear")
_linear_p.multiple_results = True


@_linear_p.def_abstract_eval
def _linear_abstract_eval(*avals, linear):
    return linear.tangent_avals


def _linear_transpose(cts, *args, linear):
    residuals = args[:linear.n_res]
    cts = [ad.instantiate_zeros(ct) for ct in cts]
    return [None] * linear.n_res + list(linear.backward.call(*residuals, *cts))


ad.primitive_transposes[_linear_p] = _linear_transpose
if _primitive_linearizations is not None:
    _primitive_linearizations[_per_platform_p] = _per_platform_linearize
