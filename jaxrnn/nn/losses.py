"""Cross entropy over a vocabulary: from logits, and fused with the output layer.

For features h_n (an RNN's outputs), output weights W [V, H], bias b [V] and target ids y_n::

    logits_n = W h_n + b
    nll_n    = logsumexp(logits_n) - logits_n[y_n]          = -log softmax(logits_n)[y_n]

and the gradient for an upstream cotangent g_n on nll_n::

    p_n  = softmax(logits_n) = exp(logits_n - logsumexp(logits_n))
    d_n  = g_n (p_n - onehot(y_n))
    dh_n = W^T d_n            dW = sum_n d_n h_n^T            db = sum_n d_n

:func:`linear_cross_entropy` computes exactly this with a hand-written backward pass
(``jax.custom_vjp``). The forward keeps the logits and the log-normaliser and picks the target
logits with a gather of N values; the backward forms ``d`` in one elementwise pass (the one-hot
from an iota comparison) and does the two gradient matmuls. Autodiff of ``log_softmax`` +
``take_along_axis`` computes the same numbers, but under ``jax.value_and_grad`` (what a training
step uses) XLA:CPU ran it with several extra passes over the [N, V] logits and a scatter: at the
PTB small preset's shape (N = 400, H = 200, V = 10,000) the layer's forward + backward took
about 40 ms that way and 26 ms this way (benchmarks/RESULTS.md). Forward-mode AD is not
available through the custom VJP; use :func:`token_cross_entropy` on logits for that.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn.kernels.matmul import mm, mm_tn

__all__ = ["linear_cross_entropy", "token_cross_entropy"]


def _outside_is_nan(nll: jax.Array, targets: jax.Array, vocab: int) -> jax.Array:
    """NaN wherever a target id lies outside [0, V) (traced ids, which cannot raise)."""
    inside = (targets >= 0) & (targets < vocab)
    return jnp.where(inside, nll, jnp.nan)


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """-log softmax(logits)[target] per position, in float32. logits [..., V], targets [...].

    Concrete targets outside [0, V) raise an IndexError; under ``jax.jit`` their NLL is NaN.
    """
    vocab = np.shape(logits)[-1]
    _checks.check_ids("token_cross_entropy", "targets", targets, vocab)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, jnp.clip(targets, 0, vocab - 1)[..., None], axis=-1)
    return _outside_is_nan(-picked[..., 0], targets, vocab)


def _forward(dtype, h, w, b, targets):
    if dtype is None:
        logits = jnp.dot(h, w.T, preferred_element_type=jnp.float32)
    else:
        logits = mm(h, w.T, dtype)
    logits = logits + b.astype(jnp.float32)[None, :]
    top = jnp.max(logits, axis=-1, keepdims=True)
    lse = top[:, 0] + jnp.log(jnp.sum(jnp.exp(logits - top), axis=-1))
    nll = lse - jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    return nll, (h, w, logits, lse, targets)


def _backward(dtype, residuals, g):
    h, w, logits, lse, targets = residuals
    probs = jnp.exp(logits - lse[:, None])
    hit = jnp.arange(logits.shape[1])[None, :] == targets[:, None]
    d = jnp.where(hit, probs - 1.0, probs) * g[:, None]
    if dtype is None:
        dh = jnp.dot(d, w.astype(jnp.float32)).astype(h.dtype)
        dw = jnp.dot(d.T, h.astype(jnp.float32)).astype(w.dtype)
    else:
        dh, dw = mm(d, w, dtype).astype(h.dtype), mm_tn(d, h, dtype=dtype).astype(w.dtype)
    return dh, dw, jnp.sum(d, axis=0).astype(w.dtype), None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _linear_ce(dtype, h, w, b, targets):
    return _forward(dtype, h, w, b, targets)[0]


_linear_ce.defvjp(_forward, _backward)


def linear_cross_entropy(
    h: jax.Array, w: jax.Array, b: jax.Array | None, targets: jax.Array,
    compute_dtype: Any = None,
) -> jax.Array:
    """Per-position ``-log softmax(h W^T + b)[target]``, in float32, with a fused backward pass.

    The same function as ``token_cross_entropy(h @ w.T + b, targets)`` (equations and gradient in
    the module docstring), differentiable in ``h``, ``w`` and ``b`` by reverse-mode AD.

    Args:
      h: float features [..., H].
      w: float output weights [V, H] (for tied embeddings, the embedding matrix).
      b: float bias [V], or None for none.
      targets: int target ids with h's leading shape, each in [0, V). Concrete ids outside
        that range raise an IndexError naming the first; under ``jax.jit`` their NLL is NaN.
      compute_dtype: None (float32 matmuls), or e.g. ``jnp.bfloat16``: the three matmuls
        (logits, dh, dW) take operands cast to it and accumulate in float32; the softmax,
        the log-normaliser and the NLL stay float32 (the cells' ``compute_dtype`` contract).

    Returns:
      float32 NLL with the shape of ``targets``.
    """
    where = "linear_cross_entropy"
    _checks.check_float(where, "h", h)
    _checks.check_float(where, "w", w)
    if np.ndim(h) < 1:
        raise ValueError(f"{where}: h has shape (); expected [..., H]")
    _checks.check_shape(where, "w", w, (None, np.shape(h)[-1]),
                        hint=f"([V, H] with H = h.shape[-1]; h has shape {tuple(np.shape(h))})")
    vocab = np.shape(w)[0]
    if b is None:
        b = jnp.zeros((vocab,), w.dtype)
    _checks.check_float(where, "b", b)
    _checks.check_shape(where, "b", b, (vocab,))
    if b.dtype != w.dtype:
        raise TypeError(f"{where}: b has dtype {b.dtype}; expected w's dtype {w.dtype}")
    _checks.check_int_array(where, "targets", targets, np.shape(h)[:-1])
    _checks.check_ids(where, "targets", targets, vocab)
    ids = jnp.reshape(targets, (-1,))
    flat = _linear_ce(
        compute_dtype, jnp.reshape(h, (-1, np.shape(h)[-1])), w, b, jnp.clip(ids, 0, vocab - 1)
    )
    return jnp.reshape(_outside_is_nan(flat, ids, vocab), np.shape(targets))
