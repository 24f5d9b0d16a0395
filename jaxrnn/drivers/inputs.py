"""Argument checks and the lengths, reverse and resets masking shared by every driver."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.base import check_carry


def check_lengths(where: str, lengths: Any, batch: int, steps: int) -> None:
    """Checks shape and dtype of ``lengths``, and its values when they are concrete.

    Under ``jax.jit`` the values are not known; lengths beyond T then act as T and negative
    lengths as 0 (documented behaviour, no error).
    """
    _checks.check_int_array(where, "lengths", lengths, (batch,))
    if _checks.is_concrete(lengths):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > steps):
            raise ValueError(
                f"{where}: lengths must lie in [0, T] = [0, {steps}]; "
                f"got values in [{values.min()}, {values.max()}]"
            )


def clamp_lengths(lengths: jax.Array, steps: int) -> jax.Array:
    """``lengths`` clipped to [0, T]: under ``jax.jit`` (values unknown when checked) lengths
    beyond T act as T and negative ones as 0, on every driver and strategy."""
    return jnp.clip(jnp.asarray(lengths), 0, steps)


def zero_padding(xs: jax.Array, lengths: jax.Array, time_major: bool = False) -> jax.Array:
    """``xs`` with every step at or past its sequence's length replaced by zeros.

    A select, not a multiplication by a mask: padding holding NaN or Inf then never reaches the
    outputs or the gradients (a padded step's value is discarded by the driver, but its
    derivatives would still be evaluated at the padded input, and 0 * NaN is NaN).
    """
    steps = xs.shape[0 if time_major else 1]
    valid = jnp.arange(steps)[None, :] < lengths[:, None]  # [B, T]
    if time_major:
        valid = valid.T
    return jnp.where(valid[..., None], xs, jnp.zeros((), xs.dtype))


def check_carry_dtypes(where: str, cell: Any, params: Any, carry: Any, batch: int) -> None:
    """Raises TypeError unless every leaf of ``carry`` has the dtype of the cell's own initial
    carry: every strategy then computes in the same dtypes (none casts a carry silently)."""
    like = jax.eval_shape(lambda p: cell.initial_carry(p, (batch,)), params)
    for (path, got), want in zip(
        jax.tree_util.tree_leaves_with_path(carry), jax.tree.leaves(like), strict=True
    ):
        if jnp.dtype(got.dtype) != jnp.dtype(want.dtype):
            raise TypeError(
                f"{where}: carry{jax.tree_util.keystr(path)} has dtype {got.dtype}; expected "
                f"{want.dtype}, the dtype of cell.initial_carry(params) (cast the carry with "
                f".astype({want.dtype}), or initialise the cell with another param_dtype)"
            )


def check_remat(where: str, remat: Any) -> None:
    """Raises ValueError unless ``remat`` is None or a positive integer (a chunk length)."""
    if remat is None:
        return
    if not isinstance(remat, int | np.integer) or isinstance(remat, bool) or remat < 1:
        raise ValueError(
            f"{where}: remat={remat!r}; expected None (no rematerialisation) or a positive "
            "integer, the number of time steps per checkpointed chunk (e.g. 64)"
        )


def check_scan_inputs(where, cell, params, xs, carry, lengths, resets, time_major):
    """Checks a driver's arguments; returns ``(carry, resets, batch, steps)``.

    ``carry`` is filled with the cell's zeros when None; ``resets`` comes back batch-major.
    """
    base.check_cell(where, cell)
    _checks.check_float(where, "xs", xs)
    layout = "[T, B, input_size]" if time_major else "[B, T, input_size]"
    if np.ndim(xs) != 3:
        raise ValueError(f"{where}: xs has shape {tuple(np.shape(xs))}; expected {layout}")
    if callable(getattr(cell, "input_size", None)):
        _checks.check_shape(where, "xs", xs, (None, None, cell.input_size(params)), f"= {layout}")
    else:  # a cell without input_size: one traced step says whether it takes this input
        base.check_input_size(where, cell, params, xs.shape[-1], xs.dtype)
    steps, batch = xs.shape[:2] if time_major else xs.shape[1::-1]
    if carry is None:
        carry = cell.initial_carry(params, (batch,))
    else:
        check_carry(cell, params, carry, (batch,), where)
    if lengths is not None:
        check_lengths(where, lengths, batch, steps)
    if resets is not None:
        _checks.check_bool_array(
            where, "resets", resets, (steps, batch) if time_major else (batch, steps)
        )
        if time_major:
            resets = resets.T
    return carry, resets, batch, steps


def reverse_index(steps: int, length: jax.Array | None) -> jax.Array:
    """Permutation reversing the valid part [0, length) and fixing the padding (an involution)."""
    t = jnp.arange(steps)
    if length is None:
        return steps - 1 - t
    return jnp.where(t < length, length - 1 - t, t)


def reverse_sequence(xs: jax.Array, resets: jax.Array | None, length: jax.Array | None):
    """One sequence's valid part reversed: ``(xs[idx], resets in that order, idx)``.

    A segment that starts at x_t going forwards starts, going backwards, before x_{t-1}, so
    the reset flags move one step before they are permuted. ``ys[idx]`` undoes the order.
    """
    idx = reverse_index(xs.shape[0], length)
    if resets is not None:
        resets = jnp.concatenate([resets[1:], jnp.zeros((1,), bool)])[idx]
    return xs[idx], resets, idx
