"""Batched matmuls with an optional reduced-precision compute dtype (the cells' contract).

With ``dtype`` None these are plain float matmuls. With ``dtype`` (e.g. ``jnp.bfloat16``) both
operands are cast to it and the products are accumulated and returned in float32: the same
contract as :func:`jaxrnn.cells.base.matmul` for one example. Operands are laid out row-major
[M, K] x [K, N], the form XLA:CPU hands to its bf16 kernels (AMX where the CPU has it; a
transposed operand falls back to a slower kernel: benchmarks/STRATEGY_HISTORY.md, 2026-11-25,
"bf16 on the fused path").

Weight gradients ``a^T b`` contract the long axis of all T*B rows. XLA folds the transpose into
the product; on a CPU that product is slow when the result is narrow, and a row-major copy of
``a^T`` made first is faster (benchmarks/STRATEGY.md, "tn_copy"; ``benchmarks/step_matmul.py``).
So on the platforms whose :data:`jaxrnn.tuning.TUNING` entry sets ``tn_copy = (min_rows, max_cols)``
(the CPU), for at least ``min_rows`` rows and at most ``max_cols`` columns, :func:`mm_tn` copies
``a^T`` once (``lax.optimization_barrier`` keeps XLA from folding it back) and shares the copy
between the products that need it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn.tuning import per_platform, tuning


def _transpose(a: jax.Array) -> jax.Array:
    return a.T


def _copied_transpose(a: jax.Array) -> jax.Array:
    return jax.lax.optimization_barrier(a.T)


def mm(a: jax.Array, b: jax.Array, dtype=None) -> jax.Array:
    """``a [..., K] @ b [K, N]``."""
    if dtype is None:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def mm_tn(a: jax.Array, *bs: jax.Array, dtype=None) -> jax.Array | tuple[jax.Array, ...]:
    """``a^T b`` summed over all leading axes: a [..., G], b [..., K] -> [G, K] (weight grads).

    With several ``bs`` (the same leading axes), returns a tuple of their products, which share
    one transposed copy of ``a`` where one is made (see the module docstring).
    """
    a2 = a.reshape(-1, a.shape[-1])
    b2s = [b.reshape(-1, b.shape[-1]) for b in bs]
    if dtype is not None:
        a2, b2s = a2.astype(dtype), [b2.astype(dtype) for b2 in b2s]
    rows, cols = a2.shape[0], max(b2.shape[1] for b2 in b2s)

    def transposed(platform):
        limits = tuning(platform).tn_copy
        if limits is not None and rows >= limits[0] and cols <= limits[1]:
            return _copied_transpose
        return _transpose

    at = per_platform(transposed, a2,
                      out_shape=jax.ShapeDtypeStruct(a2.shape[::-1], a2.dtype))
    if dtype is None:
        out = tuple(at @ b2 for b2 in b2s)
    else:
        out = tuple(jnp.matmul(at, b2, preferred_element_type=jnp.float32) for b2 in b2s)
    return out[0] if len(out) == 1 else out
