"""Chunkwise-parallel driver for cells with a chunkwise form (mLSTM, DeltaNet, Gated DeltaNet).

:func:`chunkwise_scan` computes what :func:`jaxrnn.scan` computes (same ``lengths``, ``resets``
and ``reverse`` semantics, see :mod:`jaxrnn.drivers.scan`), but a ``jax.lax.scan`` step processes
a chunk of ``chunk_size`` time steps at once with the cell's
``chunk_step(params, carry, xs, *, starts, valid, initial_carry) -> (carry, ys)``: dense matmuls
inside the chunk and the carry passed between chunks, T / chunk_size sequential steps instead of
T (Yang et al., 2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence
Length"; Beck et al., 2024, xLSTM's chunkwise mLSTM).

For each sequence: T is padded to a multiple of the chunk length with ``valid = False`` steps;
steps past ``lengths`` are also ``valid = False`` (their outputs are zero and they leave the
carry unchanged, so the final carry is the one at the last valid step); ``resets`` become
``starts`` (the carry returns to the initial carry before that step; resets on padding steps
have no effect); ``reverse=True`` reverses each sequence's valid part first, as
:func:`jaxrnn.scan` does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.drivers.inputs import check_scan_inputs, reverse_sequence


def has_chunkwise_form(cell: Any) -> bool:
    """True when ``cell`` defines ``chunk_step`` (what :func:`chunkwise_scan` runs)."""
    return callable(getattr(cell, "chunk_step", None))


def _check_chunk_size(where: str, chunk_size: Any) -> None:
    if (not isinstance(chunk_size, int | np.integer) or isinstance(chunk_size, bool)
            or chunk_size < 1):
        raise ValueError(
            f"{where}: chunk_size={chunk_size!r}; expected a positive integer, the number of "
            "time steps per chunk (e.g. 64)"
        )


def _scan_one(cell, params, xs, carry0, length, resets, *, chunk, reverse):
    steps = xs.shape[0]
    valid = jnp.ones((steps,), bool) if length is None else jnp.arange(steps) < length
    if reverse:
        xs, resets, idx = reverse_sequence(xs, resets, length)
    starts = jnp.zeros((steps,), bool) if resets is None else resets & valid

    padded = -(-steps // chunk) * chunk
    pad = padded - steps
    xs = jnp.pad(xs, ((0, pad), (0, 0)))
    valid = jnp.pad(valid, (0, pad))
    starts = jnp.pad(starts, (0, pad))

    def body(carry, part):
        x, start, ok = part
        return cell.chunk_step(params, carry, x, starts=start, valid=ok, initial_carry=carry0)

    parts = tuple(a.reshape(padded // chunk, chunk, *a.shape[1:]) for a in (xs, starts, valid))
    final, ys = jax.lax.scan(body, carry0, parts)
    ys = ys.reshape(padded, *ys.shape[2:])[:steps]
    if reverse:
        ys = ys[idx]
    return final, ys


def chunkwise_scan(
    cell: Any,
    params: Any,
    xs: jax.Array,
    carry: Any = None,
    *,
    chunk_size: int = 64,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
) -> tuple[jax.Array, Any]:
    """Runs a cell with a chunkwise form over a batch of sequences, a chunk at a time.

    Args:
      cell: a cell with ``chunk_step`` (``jaxrnn.MLSTM``, ``DeltaNet``, ``GatedDeltaNet``).
      params: the cell's params, from ``cell.init``.
      xs: float inputs [B, T, D] (or [T, B, D] with ``time_major=True``).
      carry: initial carry with batch shape (B,); zeros when None.
      chunk_size: time steps per chunk (a chunk never exceeds T; T need not be a multiple).
      lengths: int [B], valid steps of each sequence.
      resets: bool [B, T] (or [T, B] time-major): True where a step starts a new segment.
      reverse: process each sequence's valid part backwards.
      time_major: layout of ``xs``, ``resets`` and the returned outputs.

    Returns:
      ``(ys, final_carry)`` as :func:`jaxrnn.scan` returns them (equal up to rounding).
    """
    where = "jaxrnn.chunkwise_scan"
    if not has_chunkwise_form(cell):
        raise ValueError(
            f"{where}: cell {type(cell).__name__} has no chunkwise form (no chunk_step method); "
            "use jaxrnn.scan, or a cell such as jaxrnn.MLSTM, DeltaNet or GatedDeltaNet"
        )
    _check_chunk_size(where, chunk_size)
    carry, resets, _, steps = check_scan_inputs(
        where, cell, params, xs, carry, lengths, resets, time_major
    )
    if time_major:
        xs = jnp.swapaxes(xs, 0, 1)
    chunk = max(1, min(int(chunk_size), steps))

    def one(x, c, length, reset):
        return _scan_one(cell, params, x, c, length, reset, chunk=chunk, reverse=reverse)

    axes = (0, 0, None if lengths is None else 0, None if resets is None else 0)
    final, ys = jax.vmap(one, in_axes=axes)(xs, carry, lengths, resets)
    if time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    return ys, final
