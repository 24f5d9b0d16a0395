"""Fused LSTM and GRU layers with a hand-written backward pass (``jax.custom_vjp``).

Reverse-mode AD of ``lax.scan`` over a cell does, at every backward step, both the sequential
work (dh_{t-1} = dz_t W_hh) and the weight-gradient work (dW_hh += dz_t^T h_{t-1}), the latter as
many small matmuls and a growing accumulation in the loop's carry. Here the backward scan does
only the sequential part; the weight gradients are computed after it as a few large matmuls over
all T*B rows::

    dW_hh = sum_t dz_t^T h_{t-1}       dW_ih = sum_t dz_t^T x_t       db = sum_t dz_t
    dx_t  = dz_t W_ih

The forward pass hoists the input projection of all time steps into one matmul
(xp = x W_ih^T + b_ih + b_hh) and keeps the gate activations and cell states for the backward.
Without gradients (inference) it projects a chunk of time steps at a time instead, in an outer
loop over chunks, on the platforms whose :data:`jaxrnn.tuning.TUNING` entry sets
``inference_chunk_bytes`` (the CPU: the chunk's projection stays in cache).

Equations: exactly :class:`jaxrnn.LSTM` (gate order i, f, g, o; forget_bias) and
:class:`jaxrnn.GRU` with ``reset_after=True``; masks for ``lengths`` (outputs zero, carry frozen
past each length) and variational ``h_mask`` behave as in :func:`jaxrnn.scan`. Tests check values
and gradients against the plain per-step formulation on the same weights.

With the cell's ``compute_dtype`` (e.g. ``jnp.bfloat16``) every matmul, forward and backward,
takes operands cast to it and accumulates in float32 (the cells' contract); gates, states,
outputs and gradients stay float32. The weights enter the loops pre-transposed ([H, 4H] forward,
[4H, H] backward), the row-major form XLA:CPU hands to its bf16 kernels: LSTM training step at
(20, 35, 650) 59.3 ms in bf16 against 82.2 ms in float32 on a 2-core Intel Xeon with AMX-BF16
(benchmarks/STRATEGY.md, "reduced precision fuses at any batch").

Forward-mode AD (``jax.jvp``) is not available on this path (``custom_vjp``); use
``strategy="in_loop"`` or ``"hoisted"`` for it. No gradient flows to ``h_mask``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.cells.gru import GRU, GRUState
from jaxrnn.cells.lstm import LSTM, LSTMState
from jaxrnn.kernels.matmul import mm as _mm
from jaxrnn.kernels.matmul import mm_tn as _mm_tn
from jaxrnn.tuning import per_platform, tuning


def supports(cell) -> bool:
    """True when ``cell`` has a fused implementation (plain LSTM / cuDNN-style GRU)."""
    if type(cell) is LSTM:
        return cell.proj_size == 0
    if type(cell) is GRU:
        return cell.reset_after
    return False


def kind(cell) -> str:
    """The fused kernel's name for ``cell``, ``"lstm"`` or ``"gru"`` (the key of
    :attr:`jaxrnn.tuning.PlatformTuning.fused_max_batch`); ``cell`` must be supported."""
    return "lstm" if type(cell) is LSTM else "gru"


def _bias(params, cell) -> jax.Array:
    if cell.use_bias:
        return params["b_ih"] + params["b_hh"]
    return jnp.zeros((params["w_ih"].shape[0],), params["w_ih"].dtype)


def _project(xs, w_ih, b, dtype=None):
    if dtype is None:
        return jnp.einsum("tbd,gd->tbg", xs, w_ih) + b[None, None, :]
    return _mm(xs, w_ih.T, dtype) + b[None, None, :]


def _split_gates(z, n):
    """[T, B, n*H] -> n contiguous [T, B, H] arrays (one copy, outside the time loop)."""
    return tuple(jnp.split(z, n, axis=-1))


def _freeze(valid_t, new, old):
    """Keep ``old`` where the step is padding (valid_t False); valid_t is [B]."""
    return jnp.where(valid_t[:, None], new, old)


def primal_chunk(steps: int, batch: int, width: int, chunk_bytes: int | None) -> int:
    """Time steps per projected chunk in the no-gradient forward, for chunks of at most
    ``chunk_bytes`` bytes of projection (a platform's ``inference_chunk_bytes``); 0 projects all
    steps at once (``chunk_bytes`` None, an empty batch, or one chunk would hold every step)."""
    if chunk_bytes is None or batch * width == 0:
        return 0
    chunk = max(1, chunk_bytes // (4 * batch * width))
    return 0 if chunk >= steps else chunk


def _primal(forward, steps: int, batch: int, width: int, carries: int):
    """The custom VJP's primal (inference): ``forward(..., chunk)`` with each platform's
    chunking (:data:`jaxrnn.tuning.TUNING`, ``inference_chunk_bytes``), one branch per distinct
    chunk length. ``forward``'s arguments are ``(*weights, xs, *carries, valid, mask)``; it
    returns ``((ys, *final carries), residuals)``, the residuals empty with
    ``residuals=False``."""
    def run(*args):
        variants: dict[int, Any] = {}

        def for_platform(platform):
            chunk = primal_chunk(steps, batch, width, tuning(platform).inference_chunk_bytes)
            return variants.setdefault(chunk, lambda *a: forward(*a, chunk, residuals=False)[0])

        def out_shape(*a):
            states = [jax.ShapeDtypeStruct(c.shape, c.dtype) for c in a[-2 - carries:-2]]
            ys = jax.ShapeDtypeStruct((steps, *states[0].shape), states[0].dtype)
            return (ys, *states)

        return per_platform(for_platform, *args, out_shape=out_shape)

    return run


def _scan_projected(body, carry, xs, valid, project, chunk, unroll=1):
    """``lax.scan(body, carry, (project(xs), valid))``, with ``project`` applied ``chunk`` time
    steps at a time inside an outer loop when chunk > 0 (plus one tail loop for the steps left
    when chunk does not divide T)."""
    if not chunk:
        return jax.lax.scan(body, carry, (project(xs), valid), unroll=unroll)
    steps = xs.shape[0]
    head = steps - steps % chunk

    def outer(carry, part):
        x_c, v_c = part
        return jax.lax.scan(body, carry, (project(x_c), v_c), unroll=unroll)

    def chunks(a):
        return None if a is None else a[:head].reshape(head // chunk, chunk, *a.shape[1:])

    carry, outs = jax.lax.scan(outer, carry, (chunks(xs), chunks(valid)))
    outs = jax.tree.map(lambda a: a.reshape(head, *a.shape[2:]), outs)
    if head < steps:
        tail = None if valid is None else valid[head:]
        carry, rest = jax.lax.scan(body, carry, (project(xs[head:]), tail), unroll=unroll)
        outs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), outs, rest)
    return carry, outs


# ----------------------------------------------------------------------------------------- LSTM


@functools.cache
def _lstm_fn(forget_bias: float, unroll: int, dtype=None):
    # Layout: the loops read and write one [T, B, H] array per gate, never a [T, B, 4H] one
    # sliced per gate inside the loop. On XLA:CPU that slicing kept the per-step elementwise
    # fusion from vectorising: the forward loop ran 1.75x slower at (B, T, H) = (20, 35, 200)
    # (benchmarks/STRATEGY_HISTORY.md, "the per-gate fused layout"). The recurrent weight is
    # transposed once, outside the loop, so the loop's matmul reads a row-major [H, 4H] operand:
    # the training step at (8, 4096, 256) went from 1,118 to 954 ms (one A/B run), and bf16
    # operands reach XLA:CPU's bf16 kernels.
    def forward(w_ih, w_hh, b, xs, h0, c0, valid, mask, chunk=0, residuals=True):
        w_rec = w_hh.T if dtype is None else w_hh.T.astype(dtype)

        def body(carry, inp):
            h, c = carry
            (x_i, x_f, x_g, x_o), v_t = inp
            h_in = h if mask is None else h * mask
            r_i, r_f, r_g, r_o = jnp.split(_mm(h_in, w_rec, dtype), 4, axis=-1)
            i, f = jax.nn.sigmoid(x_i + r_i), jax.nn.sigmoid(x_f + r_f + forget_bias)
            g, o = jnp.tanh(x_g + r_g), jax.nn.sigmoid(x_o + r_o)
            c_new = f * c + i * g
            h_new = o * jnp.tanh(c_new)
            y = h_new
            if v_t is not None:
                c_new, h_new = _freeze(v_t, c_new, c), _freeze(v_t, h_new, h)
                y = _freeze(v_t, y, jnp.zeros_like(y))
            return (h_new, c_new), ((y, (i, f, g, o), c_new, h) if residuals else (y,))

        def project(x):
            return _split_gates(_project(x, w_ih, b, dtype), 4)

        (h_t, c_t), (ys, *saved) = _scan_projected(
            body, (h0, c0), xs, valid, project, chunk, unroll
        )
        return (ys, h_t, c_t), tuple(saved)

    @jax.custom_vjp
    def run(w_ih, w_hh, b, xs, h0, c0, valid, mask):
        primal = _primal(forward, xs.shape[0], xs.shape[1], w_ih.shape[0], carries=2)
        return primal(w_ih, w_hh, b, xs, h0, c0, valid, mask)

    def fwd(w_ih, w_hh, b, xs, h0, c0, valid, mask):
        out, (gates, cs, hprev) = forward(w_ih, w_hh, b, xs, h0, c0, valid, mask)
        return out, (w_ih, w_hh, xs, c0, valid, mask, gates, cs, hprev)

    def bwd(res, cotangents):
        w_ih, w_hh, xs, c0, valid, mask, gates, cs, hprev = res
        dys, dh_t, dc_t = cotangents
        cprev = jnp.concatenate([c0[None], cs[:-1]], axis=0)
        w_back = w_hh if dtype is None else w_hh.astype(dtype)

        def body(carry, inp):
            dh, dc = carry
            dy, (i, f, g, o), c, c_p, v_t = inp
            if v_t is not None:
                dy = _freeze(v_t, dy, jnp.zeros_like(dy))
            dh = dh + dy
            tc = jnp.tanh(c)
            dct = dc + dh * o * (1.0 - tc * tc)
            dz = (dct * g * i * (1.0 - i), dct * c_p * f * (1.0 - f),
                  dct * i * (1.0 - g * g), dh * tc * o * (1.0 - o))
            if v_t is not None:
                dz = tuple(_freeze(v_t, d, jnp.zeros_like(d)) for d in dz)
            dz = jnp.concatenate(dz, axis=-1)  # [B, 4H], stacked over T as the loop's output
            dh_prev = _mm(dz, w_back, dtype)
            if mask is not None:
                dh_prev = dh_prev * mask
            dc_prev = dct * f
            if v_t is not None:
                dh_prev, dc_prev = _freeze(v_t, dh_prev, dh), _freeze(v_t, dc_prev, dc)
            return (dh_prev, dc_prev), dz

        (dh0, dc0), dz = jax.lax.scan(
            body, (dh_t, dc_t), (dys, gates, cs, cprev, valid), reverse=True, unroll=unroll
        )
        h_in = hprev if mask is None else hprev * mask[None]
        dw_hh, dw_ih = _mm_tn(dz, h_in, xs, dtype=dtype)
        dxs = _mm(dz, w_ih, dtype)
        return dw_ih, dw_hh, jnp.sum(dz, axis=(0, 1)), dxs, dh0, dc0, None, None

    run.defvjp(fwd, bwd)
    return run


# ------------------------------------------------------------------------------------------ GRU


@functools.cache
def _gru_fn(dtype=None):
    def forward(w_ih, w_hh, b_ih, b_hh, xs, h0, valid, mask, chunk=0, residuals=True):
        w_rec = w_hh.T if dtype is None else w_hh.T.astype(dtype)

        def body(h, inp):
            (xr, xz, xn), v_t = inp
            h_in = h if mask is None else h * mask
            hp = _mm(h_in, w_rec, dtype) + b_hh[None, :]
            hr, hz, hn = jnp.split(hp, 3, axis=-1)
            r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
            h_new = (1.0 - z) * n + z * h
            y = h_new
            if v_t is not None:
                h_new = _freeze(v_t, h_new, h)
                y = _freeze(v_t, y, jnp.zeros_like(y))
            return h_new, ((y, (r, z, n, hn), h) if residuals else (y,))

        def project(x):
            return _split_gates(_project(x, w_ih, b_ih, dtype), 3)  # per-gate: see _lstm_fn

        h_t, (ys, *saved) = _scan_projected(body, h0, xs, valid, project, chunk)
        return (ys, h_t), tuple(saved)

    @jax.custom_vjp
    def run(w_ih, w_hh, b_ih, b_hh, xs, h0, valid, mask):
        primal = _primal(forward, xs.shape[0], xs.shape[1], w_ih.shape[0], carries=1)
        return primal(w_ih, w_hh, b_ih, b_hh, xs, h0, valid, mask)

    def fwd(w_ih, w_hh, b_ih, b_hh, xs, h0, valid, mask):
        out, (acts, hprev) = forward(w_ih, w_hh, b_ih, b_hh, xs, h0, valid, mask)
        return out, (w_ih, w_hh, xs, valid, mask, acts, hprev)

    def bwd(res, cotangents):
        w_ih, w_hh, xs, valid, mask, acts, hprev = res
        dys, dh_t = cotangents
        w_back = w_hh if dtype is None else w_hh.astype(dtype)

        def body(dh, inp):
            dy, act, h_p, v_t = inp
            if v_t is not None:
                dy = _freeze(v_t, dy, jnp.zeros_like(dy))
            dh = dh + dy
            r, z, n, hn = act
            dn_pre = dh * (1.0 - z) * (1.0 - n * n)
            # d wrt x W_ih^T + b_ih is (dr, dz, dn); wrt h W_hh^T + b_hh it is (dr, dz, dn * r)
            parts = (dn_pre * hn * r * (1.0 - r), dh * (h_p - n) * z * (1.0 - z), dn_pre,
                     dn_pre * r)
            if v_t is not None:
                parts = tuple(_freeze(v_t, d, jnp.zeros_like(d)) for d in parts)
            dh_rec = _mm(jnp.concatenate([parts[0], parts[1], parts[3]], axis=-1), w_back, dtype)
            if mask is not None:
                dh_rec = dh_rec * mask
            dh_prev = dh * z + dh_rec
            if v_t is not None:
                dh_prev = _freeze(v_t, dh_prev, dh)
            return dh_prev, parts

        dh0, (dr, dz, dn, dn_r) = jax.lax.scan(body, dh_t, (dys, acts, hprev, valid), reverse=True)
        d_hidden = jnp.concatenate([dr, dz, dn_r], axis=-1)
        d_input = jnp.concatenate([dr, dz, dn], axis=-1)
        h_in = hprev if mask is None else hprev * mask[None]
        dw_hh = _mm_tn(d_hidden, h_in, dtype=dtype)
        dw_ih = _mm_tn(d_input, xs, dtype=dtype)
        dxs = _mm(d_input, w_ih, dtype)
        db_ih, db_hh = jnp.sum(d_input, axis=(0, 1)), jnp.sum(d_hidden, axis=(0, 1))
        return dw_ih, dw_hh, db_ih, db_hh, dxs, dh0, None, None

    run.defvjp(fwd, bwd)
    return run


# -------------------------------------------------------------------------------------- driver


def fused_scan(cell, params, xs, carry, valid=None, h_mask=None, unroll: int = 1):
    """Runs a supported cell over time-major xs [T, B, D] with batched ``carry``.

    ``valid`` is bool [T, B] (False on padding steps) or None; ``h_mask`` [B, H] or None;
    ``unroll`` is ``jax.lax.scan``'s, for the forward and the backward loop.
    Returns ``(ys [T, B, H], final_carry)``.

    Inputs of another float dtype than the parameters' are cast to it, as the per-step cells'
    type promotion does; the carry must have the dtype of ``cell.initial_carry(params)``
    (:func:`jaxrnn.scan` checks it). Padding steps (``valid`` False) have their inputs replaced
    by zeros with a select, so NaN or Inf there never reach the weight gradients.
    """
    xs = jnp.asarray(xs).astype(params["w_ih"].dtype)
    if valid is not None:
        xs = jnp.where(valid[..., None], xs, jnp.zeros((), xs.dtype))
    if type(cell) is LSTM:
        ys, h, c = _lstm_fn(float(cell.forget_bias), int(unroll), cell.compute_dtype)(
            params["w_ih"], params["w_hh"], _bias(params, cell), xs, carry.h, carry.c,
            valid, h_mask,
        )
        return ys, LSTMState(h=h, c=c)
    if type(cell) is GRU:
        zeros = jnp.zeros((params["w_ih"].shape[0],), params["w_ih"].dtype)
        b_ih = params["b_ih"] if cell.use_bias else zeros
        b_hh = params["b_hh"] if cell.use_bias else zeros
        ys, h = _gru_fn(cell.compute_dtype)(
            params["w_ih"], params["w_hh"], b_ih, b_hh, xs, carry.h, valid, h_mask
        )
        return ys, GRUState(h=h)
    raise TypeError(f"fused_scan: no fused implementation for {type(cell).__name__}")
