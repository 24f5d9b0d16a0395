"""The LSTM through cuDNN (``jax.experimental.rnn``) on NVIDIA GPUs: ``strategy="cudnn"``.

cuDNN's LSTM computes the equations of :class:`jaxrnn.LSTM` (gate order i, f, g, o; PyTorch's
double bias) from one opaque, flat weight vector. jaxrnn keeps its own parameter pytree and packs
it for every call, inside the traced function, so gradients flow back to ``w_ih``, ``w_hh``,
``b_ih`` and ``b_hh`` through the packing::

    flat = concat(w_ih.ravel(), w_hh.ravel(), b_ih, b_hh')     # one layer, one direction
    b_hh' = b_hh + forget_bias on the f rows                   # cuDNN has no forget_bias

(the layout of ``jax.experimental.rnn.unpack_lstm_weights``). ``lengths`` become cuDNN's
``seq_lengths``; sequences of length 0 get the initial carry and zero outputs, and outputs past
each length are zeroed, as :func:`jaxrnn.scan` promises. Reversal is done by the caller.

Supported: a plain ``LSTM`` (no ``proj_size``, no ``compute_dtype``) without ``resets``,
``h_mask`` or ``remat``. Everything else, and every platform but CUDA (ROCm included), runs
the "fused" path instead (the same function). Matmul precision follows JAX's
(``jax.default_matmul_precision``): TF32 is allowed by default on GPUs that have it, as in
PyTorch's cuDNN LSTM.

cuDNN itself is checked only on a machine with an NVIDIA GPU
(``tests/test_cudnn.py::test_real_cudnn_*``, also run by ``benchmarks/gpu_check.sh``), and these
checks have not yet run on one. On a CPU the tests replace the cuDNN call with
``jax.experimental.rnn.lstm_ref``, JAX's reference for the same packed weights, and check values
and gradients against the per-step cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn.cells.lstm import LSTM, LSTMState

PLATFORMS: tuple[str, ...] = ("cuda",)
"""The lowering platforms ``strategy="cudnn"`` runs cuDNN on (elsewhere it runs "fused")."""


def supports(cell) -> bool:
    """True for a cell cuDNN computes exactly: a plain float32 LSTM."""
    return type(cell) is LSTM and cell.proj_size == 0 and cell.compute_dtype is None


def available() -> bool:
    """True when this process has a CUDA GPU.

    ``jax.experimental.rnn`` queries cuDNN's workspace sizes while it traces, so the cuDNN path
    can only be traced where a CUDA GPU is present: this is the one platform decision jaxrnn
    makes from the tracing machine, and it only enables the explicit ``strategy="cudnn"``
    (never ``"auto"``). ROCm GPUs have no cuDNN and run ``"fused"``.
    """
    try:
        return len(jax.devices("cuda")) > 0
    except RuntimeError:  # no CUDA backend in this process
        return False


def pack_weights(cell: LSTM, params) -> jax.Array:
    """jaxrnn's LSTM params -> cuDNN's flat weight vector (one layer, one direction)."""
    w_ih, w_hh = params["w_ih"], params["w_hh"]
    zeros = jnp.zeros((w_ih.shape[0],), w_ih.dtype)
    b_ih = params["b_ih"] if cell.use_bias else zeros
    b_hh = params["b_hh"] if cell.use_bias else zeros
    if cell.forget_bias:
        h = cell.hidden_size
        b_hh = b_hh.at[h : 2 * h].add(jnp.asarray(cell.forget_bias, b_hh.dtype))
    return jnp.concatenate([w_ih.ravel(), w_hh.ravel(), b_ih, b_hh])


def lstm_call(x, h0, c0, weights, seq_lengths, input_size, hidden_size):
    """One cuDNN LSTM layer; a module-level function so tests can stand in a reference."""
    from jax.experimental import rnn

    return rnn.lstm(x, h0, c0, weights, seq_lengths, input_size=input_size,
                    hidden_size=hidden_size, num_layers=1, dropout=0.0, bidirectional=False)


def cudnn_scan(cell: LSTM, params, xs, carry: LSTMState, lengths=None):
    """Batch-major xs [B, T, D] -> (ys [B, T, H], final LSTMState), forward in time."""
    batch, steps, d = xs.shape
    full = jnp.full((batch,), steps, jnp.int32)
    seq = full if lengths is None else jnp.asarray(lengths, jnp.int32)
    ys, h_n, c_n = lstm_call(
        xs, carry.h[None], carry.c[None], pack_weights(cell, params), jnp.maximum(seq, 1),
        d, cell.hidden_size,
    )
    h, c = h_n[0], c_n[0]
    if lengths is not None:
        valid = jnp.arange(steps)[None, :] < seq[:, None]
        ys = jnp.where(valid[:, :, None], ys, jnp.zeros((), ys.dtype))
        empty = (seq == 0)[:, None]
        h, c = jnp.where(empty, carry.h, h), jnp.where(empty, carry.c, c)
    return ys, LSTMState(h=h, c=c)
