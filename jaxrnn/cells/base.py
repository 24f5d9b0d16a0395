"""The cell protocol shared by every recurrent cell, and the helpers the cells use.

A cell is a frozen, hashable dataclass of hyperparameters (usable as a static argument to
``jax.jit``) with pure functions:

- ``init(key, input_size) -> params``: a plain dict of arrays; the layout is documented per cell.
- ``initial_carry(params, batch_shape=()) -> carry``: a NamedTuple with named fields; every carry
  has a field ``h`` (the hidden state fed back through the recurrent weights).
- ``step(params, carry, x) -> (carry, y)``: ONE example, ``x`` of shape ``[input_size]``;
  batch with ``jax.vmap`` or run over time with :func:`jaxrnn.scan`.

``step`` is split into its time-parallel and its sequential part, so that a driver can hoist the
input projection of all time steps into one large matmul or keep it inside the loop:

- ``input_projection(params, x) -> xp``: depends on ``x`` only (no carry).
- ``recurrent_step(params, carry, xp, h_mask=None) -> (carry, y)``: the recurrence.
  ``h_mask`` (optional, shape of ``carry.h``) multiplies ``h_{t-1}`` where it enters the
  recurrent matmuls: variational dropout (Gal & Ghahramani, 2016).

``step(params, carry, x) == recurrent_step(params, carry, input_projection(params, x))``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from jaxrnn import _checks

Params = dict[str, jax.Array]


@runtime_checkable
class Cell(Protocol):
    hidden_size: int

    @property
    def output_size(self) -> int: ...

    def init(self, key: jax.Array, input_size: int) -> Params: ...

    def initial_carry(self, params: Params, batch_shape: tuple[int, ...] = ()) -> Any: ...

    def step(self, params: Params, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]: ...

    def input_projection(self, params: Params, x: jax.Array) -> jax.Array: ...

    def recurrent_step(
        self, params: Params, carry: Any, xp: jax.Array, h_mask: jax.Array | None = None
    ) -> tuple[Any, jax.Array]: ...


def input_size_of(params: Params) -> int:
    """The input size a cell's params were initialised for (``w_ih`` is [rows, input_size])."""
    return int(params["w_ih"].shape[-1])


def check_step_input(cell: Any, params: Params, x: jax.Array) -> None:
    """Checks one example's input ``x`` against the cell's params."""
    where = f"{type(cell).__name__}.step"
    _checks.check_float(where, "x", x)
    d = input_size_of(params)
    _checks.check_shape(
        where,
        "x",
        x,
        (d,),
        hint="= (input_size,) for one example; use jax.vmap or jaxrnn.scan for batches",
    )


def check_carry(cell: Any, params: Params, carry: Any, batch_shape=(), where: str = "") -> None:
    """Checks that ``carry`` matches ``cell.initial_carry(params, batch_shape)``."""
    like = jax.eval_shape(lambda p: cell.initial_carry(p, batch_shape), params)
    _checks.check_tree_like(where or f"{type(cell).__name__}.step", "carry", carry, like)


def matmul(x: jax.Array, w: jax.Array, compute_dtype) -> jax.Array:
    """``x @ w.T`` for one example ``x`` [K] and ``w`` [N, K], accumulated in float32.

    With a ``compute_dtype`` (e.g. bfloat16) both operands are cast to it and the product is
    accumulated and returned in float32.
    """
    if compute_dtype is not None:
        x = x.astype(compute_dtype)
        w = w.astype(compute_dtype)
    out_dtype = jnp.float32 if compute_dtype is not None else None
    return jnp.dot(w, x, preferred_element_type=out_dtype)


def init_linear_params(
    initializer, key: jax.Array, layout: dict[str, tuple[str, tuple[int, ...]]], hidden_size: int,
    dtype,
) -> Params:
    """Initialises parameters from ``{name: (role, shape)}`` with one key per parameter."""
    keys = jax.random.split(key, len(layout))
    return {
        name: initializer(k, role, shape, hidden_size, dtype)
        for k, (name, (role, shape)) in zip(keys, layout.items(), strict=True)
    }
