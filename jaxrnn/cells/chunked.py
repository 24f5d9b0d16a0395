"""Helpers shared by the chunkwise-parallel forms of the matrix-memory cells.

A cell's ``chunk_step(params, carry, xs, *, starts, valid, initial_carry) -> (carry, ys)``
processes one example's chunk xs [C, D] at once (:func:`jaxrnn.chunkwise_scan` drives it):
``starts[t]`` returns the carry to ``initial_carry`` before step t, and ``valid[t] = False``
marks padding, which leaves the carry unchanged and outputs zeros.

Inside a chunk, resets are segment masks: step t only sees the steps s <= t of its own
segment, and the state it continues is the incoming ``carry`` for the chunk's first segment,
``initial_carry`` for every later one. Padding steps are identity steps (no input, no decay).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells.base import input_size_of


class Segments(NamedTuple):
    """Segment structure of one chunk of C steps.

    Attributes:
      same: bool [C, C]; ``same[t, s]``: s <= t, s lies in t's segment and s is valid.
      first: bool [C]; t lies in the chunk's first segment (it continues the incoming carry).
      start: int [C]; the index of the first step of t's segment (0 for the first segment).
    """

    same: jax.Array
    first: jax.Array
    start: jax.Array


def segments(starts: jax.Array, valid: jax.Array) -> Segments:
    """The segments of a chunk from its ``starts`` and ``valid`` masks (both bool [C])."""
    steps = starts.shape[0]
    t = jnp.arange(steps)
    starts = starts & valid
    seg = jnp.cumsum(starts.astype(jnp.int32))
    same = (seg[:, None] == seg[None, :]) & (t[None, :] <= t[:, None]) & valid[None, :]
    start = jax.lax.cummax(jnp.where(starts, t, 0))
    return Segments(same=same, first=seg == 0, start=start)


def pick(first: jax.Array, from_carry: jax.Array, from_initial: jax.Array) -> jax.Array:
    """Per step t (leading axis of size C, or 1 to broadcast): ``from_carry`` in the chunk's
    first segment, ``from_initial`` in the later ones."""
    mask = first.reshape(first.shape + (1,) * (from_carry.ndim - 1))
    return jnp.where(mask, from_carry, from_initial)


def last_valid(valid: jax.Array, values: jax.Array, previous: jax.Array) -> jax.Array:
    """``values`` [C, ...] at the chunk's last valid step; ``previous`` when none is valid."""
    t = jnp.arange(valid.shape[0])
    last = jnp.max(jnp.where(valid, t, -1))
    return jnp.where(last >= 0, values[jnp.maximum(last, 0)], previous)


def zero_invalid(valid: jax.Array, ys: jax.Array) -> jax.Array:
    """Outputs [C, ...] with the padding steps set to zero."""
    mask = valid.reshape(valid.shape + (1,) * (ys.ndim - 1))
    return jnp.where(mask, ys, jnp.zeros_like(ys))


def masked_exp(mask: jax.Array, logits: jax.Array) -> jax.Array:
    """``exp(logits)`` where ``mask``, exactly 0 elsewhere (no overflow or NaN gradient there)."""
    return jnp.exp(jnp.where(mask, logits, -jnp.inf))


def check_chunk(cell: Any, params, xs, starts, valid) -> None:
    """Shapes of a chunk_step's arguments: xs [C, input_size], starts and valid bool [C]."""
    where = f"{type(cell).__name__}.chunk_step"
    _checks.check_float(where, "xs", xs)
    _checks.check_shape(where, "xs", xs, (None, input_size_of(params)), "= (C, input_size)")
    steps = xs.shape[0]
    _checks.check_bool_array(where, "starts", starts, (steps,))
    _checks.check_bool_array(where, "valid", valid, (steps,))
