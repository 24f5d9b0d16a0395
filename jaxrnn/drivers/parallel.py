"""Parallel-over-time driver for cells whose recurrence is linear: ``s_t = a_t * s_{t-1} + b_t``.

:func:`associative_scan` computes what :func:`jaxrnn.scan` computes (same ``lengths``, ``resets``
and ``reverse`` semantics, see :mod:`jaxrnn.drivers.scan`), in O(log T) depth with
``jax.lax.associative_scan`` (Blelloch, 1990; as minimal-LRU and recurrentgemma). Each step is the
affine map ``s -> a s + b``; composing step 1 then step 2 gives ``(a1 a2, a2 b1 + b2)``. A
segment start (t = 0, or ``resets[t]``) drops everything before it::

    (r1, A1, B1) o (r2, A2, B2) = (r1 | r2, A2, B2)                 if r2
                                = (r1, A1 A2, A2 B1 + B2)            otherwise

and then ``s_t = A_t * s_init + B_t`` with ``A_t``, ``B_t`` accumulated since the segment start and
``s_init`` the initial carry (as zeroing ``a`` at segment starts and substituting the initial
carry). For cells with ``log_space = True`` (minGRU, minLSTM of Feng et al. 2024) the same
operator works on logarithms, ``(A1 + A2, logaddexp(A2 + B1, B2))``, and
``s_t = exp(A_t) * s_init + exp(B_t)``: b_t > 0 is never multiplied in linear space.

Lengths: steps past a sequence's length do not enter the final carry (taken at step L - 1, or
the initial carry for L = 0) and their outputs are zero; padded inputs are replaced by zeros
first (a select), so NaN or Inf there reach neither the outputs nor the gradients. Under
``jax.jit`` lengths beyond T act as T and negative ones as 0. ``reverse`` processes the valid part
backwards, as :func:`jaxrnn.scan` does. T = 0 returns the initial carry and empty outputs.

A cell qualifies when it has, for one example: ``input_projection(params, x) -> xp``,
``coefficients(params, xp) -> (a, b)`` (``log_coefficients`` for ``log_space`` cells),
``carry_to_state(carry)``, ``state_to_carry(state)`` and ``readout(params, carry, xp) -> y``
(see :mod:`jaxrnn.cells.minimal`). minGRU, minLSTM, LRU and RG-LRU do.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.drivers.inputs import (
    check_carry_dtypes,
    check_scan_inputs,
    clamp_lengths,
    reverse_sequence,
    zero_padding,
)

_REQUIRED = ("input_projection", "coefficients", "carry_to_state", "state_to_carry", "readout")


def is_linear(cell: Any) -> bool:
    """True when ``cell`` exposes a linear recurrence :func:`associative_scan` can run."""
    return all(hasattr(cell, name) for name in _REQUIRED)


def _combine_linear(e1, e2):
    r1, a1, b1 = e1
    r2, a2, b2 = e2
    keep = r2[..., None]
    return r1 | r2, jnp.where(keep, a2, a1 * a2), jnp.where(keep, b2, a2 * b1 + b2)


def _combine_log(e1, e2):
    r1, a1, b1 = e1
    r2, a2, b2 = e2
    keep = r2[..., None]
    return r1 | r2, jnp.where(keep, a2, a1 + a2), jnp.where(keep, b2, jnp.logaddexp(a2 + b1, b2))


def _scan_one(cell, params, xs, carry0, length, resets, *, reverse):
    steps = xs.shape[0]
    if reverse:
        xs, resets, idx = reverse_sequence(xs, resets, length)
    starts = jnp.arange(steps) == 0
    if resets is not None:
        starts = starts | resets

    xp = jax.vmap(cell.input_projection, in_axes=(None, 0))(params, xs)
    s0 = cell.carry_to_state(carry0)
    if getattr(cell, "log_space", False):
        log_a, log_b = jax.vmap(cell.log_coefficients, in_axes=(None, 0))(params, xp)
        _, acc_a, acc_b = jax.lax.associative_scan(_combine_log, (starts, log_a, log_b))
        states = jnp.exp(acc_a) * s0[None] + jnp.exp(acc_b)
    else:
        a, b = jax.vmap(cell.coefficients, in_axes=(None, 0))(params, xp)
        _, acc_a, acc_b = jax.lax.associative_scan(_combine_linear, (starts, a, b))
        states = acc_a * s0[None] + acc_b

    carries = jax.vmap(cell.state_to_carry)(states)
    carries = jax.tree.map(lambda c, c0: c.astype(c0.dtype), carries, carry0)
    ys = jax.vmap(cell.readout, in_axes=(None, 0, 0))(params, carries, xp)
    ys = ys.astype(jax.tree.leaves(carry0)[0].dtype)
    if length is None:
        final = jax.tree.map(lambda c: c[-1], carries)
    else:
        last = jnp.clip(length - 1, 0, steps - 1)
        final = jax.tree.map(
            lambda c, c0: jnp.where(length > 0, c[last], c0), carries, carry0
        )
        valid = jnp.arange(steps) < length
        ys = jnp.where(valid[:, None], ys, jnp.zeros_like(ys))
    if reverse:
        ys = ys[idx]
    return final, ys


def associative_scan(
    cell: Any,
    params: Any,
    xs: jax.Array,
    carry: Any = None,
    *,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
) -> tuple[jax.Array, Any]:
    """Runs a linear-recurrence cell over a batch of sequences, in parallel over time.

    Args:
      cell: a cell with a linear recurrence (``jaxrnn.MinGRU``, ``MinLSTM``, ``LRU``, ``RGLRU``).
      params: the cell's params, from ``cell.init``.
      xs: float inputs [B, T, D] (or [T, B, D] with ``time_major=True``).
      carry: initial carry with batch shape (B,); zeros when None.
      lengths: int [B], valid steps of each sequence.
      resets: bool [B, T] (or [T, B] time-major): True where a step starts a new segment.
      reverse: process each sequence's valid part backwards.
      time_major: layout of ``xs``, ``resets`` and the returned outputs.

    Returns:
      ``(ys, final_carry)`` as :func:`jaxrnn.scan` returns them (equal up to rounding).
    """
    where = "jaxrnn.drivers.parallel.associative_scan"
    if not is_linear(cell):
        missing = [name for name in _REQUIRED if not hasattr(cell, name)]
        raise TypeError(
            f"{where}: cell {type(cell).__name__} has no linear recurrence (missing "
            f"{', '.join(missing)}); use jaxrnn.scan, or a cell such as jaxrnn.MinGRU, "
            "MinLSTM, LRU or RGLRU"
        )
    carry, resets, batch, steps = check_scan_inputs(
        where, cell, params, xs, carry, lengths, resets, time_major
    )
    check_carry_dtypes(where, cell, params, carry, batch)
    if steps == 0:  # nothing to scan: the initial carry and no outputs
        out = jax.eval_shape(
            lambda x, c: _scan_one(cell, params, x, c, None, None, reverse=False),
            jax.ShapeDtypeStruct((1, xs.shape[-1]), xs.dtype),
            jax.tree.map(lambda c: jax.ShapeDtypeStruct(c.shape[1:], c.dtype), carry),
        )[1]
        shape = (0, batch) if time_major else (batch, 0)
        return jnp.zeros((*shape, *out.shape[1:]), out.dtype), carry
    if lengths is not None:
        lengths = clamp_lengths(lengths, steps)
        xs = zero_padding(xs, lengths, time_major)
    if time_major:
        xs = jnp.swapaxes(xs, 0, 1)

    def one(x, c, length, reset):
        return _scan_one(cell, params, x, c, length, reset, reverse=reverse)

    axes = (0, 0, None if lengths is None else 0, None if resets is None else 0)
    final, ys = jax.vmap(one, in_axes=axes)(xs, carry, lengths, resets)
    if time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    return ys, final
