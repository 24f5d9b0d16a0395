"""Flax adapters: jaxrnn cells inside ``flax.linen`` / ``flax.nnx`` models, modules.

Modules:

- :class:`CellModule`: any jaxrnn cell as a ``flax.linen`` RNN cell (``nn.RNNCellBase``), so
  ``nn.RNN(CellModule(jaxrnn.LSTM(64)))`` works. Batched inputs ``[..., D]`` are handled by
  ``jax.vmap`` over the leading axes; the carry is the cell's own NamedTuple (``LSTMState(h, c)``).
- :class:`RNNModule`: a linen layer that calls :func:`jaxrnn.scan` directly (lengths, resets,
  reverse, hoisted input projection). Same parameter layout as :class:`CellModule`.
- :class:`NNXCell` / :func:`nnx_cell`: the same for ``flax.nnx``.

All three store the cell's params dict as ONE parameter named ``"cell"`` (e.g.
``variables["params"]["cell"]["w_ih"]``), so the params can be passed to ``cell.step`` or
:func:`jaxrnn.scan` unchanged.

Weight conversion from and to flax's own cells: :mod:`jaxrnn.interop.flax_convert`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from jaxrnn.cells.base import Params
from jaxrnn.drivers.scan import scan as _scan
from jaxrnn.drivers.strategy import Strategy

_LSTM_GATES = ("i", "f", "g", "o")
_GRU_GATES = ("r", "z", "n")


# ---------------------------------------------------------------------------------------------
# Running a cell on inputs with any number of leading batch axes.


def _batched_step(cell: Any, params: Params, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]:
    """``cell.step`` for ``x`` [..., D] and a carry with the same leading batch axes."""
    step = cell.step
    for _ in range(x.ndim - 1):
        step = jax.vmap(step, in_axes=(None, 0, 0))
    return step(params, carry, x)


def _zero_carry(cell: Any, input_size: int, batch_shape: tuple[int, ...], key: jax.Array) -> Any:
    """``cell.initial_carry`` without materialising params: shapes from ``jax.eval_shape``."""
    like = jax.eval_shape(
        lambda k: cell.initial_carry(cell.init(k, input_size), batch_shape), key
    )
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), like)


def _check_input(where: str, x: Any, min_ndim: int, layout: str) -> None:
    if jnp.ndim(x) < min_ndim:
        raise ValueError(f"{where}: inputs have shape {tuple(jnp.shape(x))}; expected {layout}")


# ---------------------------------------------------------------------------------------------
# flax.linen


class CellModule(nn.RNNCellBase):
    """Any jaxrnn cell as a ``flax.linen`` RNN cell, usable with ``nn.RNN``.

    Example::

        layer = nn.RNN(CellModule(jaxrnn.LSTM(64)))
        variables = layer.init(key, xs)             # xs [B, T, D]
        ys = layer.apply(variables, xs)             # [B, T, 64]
        params = variables["params"]["cell"]["cell"]   # the jaxrnn params dict

    The params (one entry ``"cell"`` holding ``cell.init(key, D)``) are created lazily from the
    last axis of the first input.

    Attributes:
      cell: a jaxrnn cell (``jaxrnn.LSTM(...)``, ``jaxrnn.GRU(...)``, ...).
    """

    cell: Any

    @nn.compact
    def __call__(self, carry: Any, inputs: jax.Array) -> tuple[Any, jax.Array]:
        """One time step.

        Args:
          carry: the cell's carry with batch shape ``inputs.shape[:-1]``, e.g. from
            :meth:`initialize_carry`.
          inputs: float [..., input_size]; leading axes are batch axes.

        Returns:
          ``(carry, y)`` with y [..., output_size].
        """
        _check_input("CellModule", inputs, 1, "[..., input_size]")
        input_size = inputs.shape[-1]
        params = self.param("cell", lambda key: self.cell.init(key, input_size))
        return _batched_step(self.cell, params, carry, inputs)

    @nn.nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Any:
        """The cell's zero carry for inputs of shape ``input_shape = (*batch, input_size)``.

        Called by ``nn.RNN`` before the params exist, so it gives the zeros of
        ``cell.initial_carry`` (dtypes from the cell's ``param_dtype``); ``rng`` is unused.
        """
        if len(input_shape) < 1:
            raise ValueError(
                f"CellModule.initialize_carry: input_shape={tuple(input_shape)}; "
                "expected (*batch, input_size)"
            )
        return _zero_carry(self.cell, int(input_shape[-1]), tuple(input_shape[:-1]), rng)

    @property
    def num_feature_axes(self) -> int:
        return 1


class RNNModule(nn.Module):
    """A ``flax.linen`` layer running a jaxrnn cell over sequences with :func:`jaxrnn.scan`.

    Faster than ``nn.RNN(CellModule(cell))`` (no linen scan lifting; the input projection can be
    hoisted out of the loop), with jaxrnn's semantics for ``lengths`` (outputs past a length are
    zero, the final carry is the one at the last valid step) and ``reverse`` (only the valid part
    is reversed and outputs stay in input order). Params are laid out as in :class:`CellModule`:
    ``variables["params"]["cell"]`` is the cell's params dict.

    Attributes:
      cell: a jaxrnn cell.
      reverse, unroll, time_major, strategy: forwarded to :func:`jaxrnn.scan`.
    """

    cell: Any
    reverse: bool = False
    unroll: int = 1
    time_major: bool = False
    strategy: Strategy = "auto"

    @nn.compact
    def __call__(
        self,
        xs: jax.Array,
        carry: Any = None,
        *,
        lengths: jax.Array | None = None,
        resets: jax.Array | None = None,
        h_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, Any]:
        """Runs the cell over ``xs``.

        Args:
          xs: float [B, T, D] (or [T, B, D] with ``time_major=True``).
          carry: initial carry with batch shape (B,); zeros when None.
          lengths: int [B], valid steps of each sequence.
          resets: bool [B, T] (or [T, B]), True where a new segment starts.
          h_mask: float [B, output_size], variational dropout mask on ``h_{t-1}``.

        Returns:
          ``(ys, final_carry)`` as :func:`jaxrnn.scan`.
        """
        _check_input("RNNModule", xs, 1, "[B, T, input_size]")
        input_size = xs.shape[-1]
        params = self.param("cell", lambda key: self.cell.init(key, input_size))
        return _scan(
            self.cell, params, xs, carry, lengths=lengths, resets=resets, reverse=self.reverse,
            unroll=self.unroll, time_major=self.time_major, strategy=self.strategy, h_mask=h_mask,
        )


# ---------------------------------------------------------------------------------------------
# flax.nnx


class NNXCell(nnx.Module):
    """A jaxrnn cell and its params as a ``flax.nnx`` module.

    ``self.params`` is one ``nnx.Param`` holding the cell's params dict (``cell.init(...)``).

    Example::

        model = nnx_cell(jaxrnn.GRU(32), input_size=8, rngs=nnx.Rngs(0))
        carry = model.initial_carry((B,))
        carry, y = model(carry, x)          # x [B, 8]: one step
        ys, final = model.scan(xs)          # xs [B, T, 8]: jaxrnn.scan
    """

    def __init__(self, cell: Any, input_size: int, *, rngs: nnx.Rngs):
        self.cell = cell
        self.params = nnx.Param(cell.init(rngs.params(), input_size))

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> Any:
        return self.cell.initial_carry(self.params.get_value(), batch_shape)

    def __call__(self, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]:
        """One step; ``x`` [..., input_size] with leading batch axes matching the carry's."""
        _check_input("NNXCell", x, 1, "[..., input_size]")
        return _batched_step(self.cell, self.params.get_value(), carry, x)

    def scan(self, xs: jax.Array, carry: Any = None, **kwargs: Any) -> tuple[jax.Array, Any]:
        """:func:`jaxrnn.scan` with this module's params; keyword arguments are forwarded."""
        return _scan(self.cell, self.params.get_value(), xs, carry, **kwargs)


def nnx_cell(cell: Any, input_size: int, *, rngs: nnx.Rngs) -> NNXCell:
    """Builds an :class:`NNXCell` for ``cell`` with params initialised for ``input_size``."""
    return NNXCell(cell, input_size, rngs=rngs)
