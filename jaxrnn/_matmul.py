"""Batched matmuls with an optional reduced-precision compute dtype (the cells' contract).

With ``dtype`` None these are plain float matmuls. With ``dtype`` (e.g. ``jnp.bfloat16``) both
operands are cast to it and the products are accumulated and returned in float32: the same
contract as :func:`jaxrnn.cells.base.matmul` for one example. Operands are laid out row-major
[M, K] x [K, N], the form XLA:CPU hands to its bf16 kernels (AMX where the CPU has it): on the
2-core Sapphire Rapids CPU of benchmarks/RESULTS.md, a (6400, 256) x (256, 1024) product ran at
~1,400 GFLOP/s in bf16 against ~300 in float32, while contracting a transposed operand fell
back to ~200 GFLOP/s.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mm(a: jax.Array, b: jax.Array, dtype=None) -> jax.Array:
    """``a [..., K] @ b [K, N]``."""
    if dtype is None:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def mm_tn(a: jax.Array, b: jax.Array, dtype=None) -> jax.Array:
    """``a^T b`` summed over all leading axes: a [..., G], b [..., K] -> [G, K] (weight grads)."""
    a2 = a.reshape(-1, a.shape[-1])
    b2 = b.reshape(-1, b.shape[-1])
    if dtype is None:
        return a2.T @ b2
    return jnp.matmul(a2.T.astype(dtype), b2.astype(dtype), preferred_element_type=jnp.float32)
