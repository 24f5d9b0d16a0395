"""Batched matmuls with an optional reduced-precision compute dtype (the cells' contract).

With ``dtype`` None these are plain float matmuls. With ``dtype`` (e.g. ``jnp.bfloat16``) both
operands are cast to it and the products are accumulated and returned in float32: the same
contract as :func:`jaxrnn.cells.base.matmul` for one example. Operands are laid out row-major
[M, K] x [K, N], the form XLA:CPU hands to its bf16 kernels (AMX where the CPU has it): on the
2-core Sapphire Rapids CPU of benchmarks/RESULTS.md, a (6400, 256) x (256, 1024) product ran at
~1,400 GFLOP/s in bf16 against ~300 in float32, while contracting a transposed operand fell
back to ~200 GFLOP/s.

Weight gradients ``a^T b`` contract the long axis of all T*B rows. XLA folds the transpose into
the product, and on a CPU that product is slow when the result is narrow: on the 2-core AMD EPYC
of benchmarks/RESULTS.md (session 6), [6,400, 1,024]^T x [6,400, 256] ran at 125 GFLOP/s, and at
148 GFLOP/s from a row-major copy of ``a^T`` made first (the copy included; the product alone at
191). With 650 columns the folded form was the faster one (200 against 171 GFLOP/s at 1,400 rows).
So on a CPU, for at least :data:`TN_COPY_MIN_ROWS` rows and at most :data:`TN_COPY_MAX_COLS`
columns, :func:`mm_tn` copies ``a^T`` once (``lax.optimization_barrier`` keeps XLA from folding
it back) and shares the copy between the products that need it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TN_COPY_MIN_ROWS = 2048
TN_COPY_MAX_COLS = 512


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
    at = a2.T
    if (jax.default_backend() == "cpu" and a2.shape[0] >= TN_COPY_MIN_ROWS
            and max(b2.shape[1] for b2 in b2s) <= TN_COPY_MAX_COLS):
        at = jax.lax.optimization_barrier(at)
    if dtype is None:
        out = tuple(at @ b2 for b2 in b2s)
    else:
        out = tuple(jnp.matmul(at, b2, preferred_element_type=jnp.float32) for b2 in b2s)
    return out[0] if len(out) == 1 else out
