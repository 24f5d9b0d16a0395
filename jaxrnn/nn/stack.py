"""Layers: stacks of cells over time, bidirectional, residual, dropout, trainable initial state.

:class:`StackedRNN` runs ``num_layers`` copies of one cell configuration with :func:`jaxrnn.scan`.
The first layer sees the input size D; later layers see ``cell.output_size * num_directions``.

Dropout (all with an explicit ``key`` and a ``train`` switch; nothing happens when
``train=False``; kept units are scaled by 1 / (1 - p)):

- ``dropout``: on the outputs of every layer except the last, as ``torch.nn.LSTM``'s dropout;
  a fresh mask per time step, or with ``locked_dropout=True`` one mask per sequence shared by all
  time steps (Gal & Ghahramani 2016; "locked dropout" of Merity et al. 2018).
- ``recurrent_dropout``: variational dropout on the recurrent connection, one mask per sequence
  on h_{t-1} where it enters the recurrent matmuls, inside the recurrence (Gal & Ghahramani 2016).

Parameters: ``{"layers": [{"fwd": cell_params, "bwd": cell_params}, ...],
"initial": [{"fwd": carry, "bwd": carry}, ...]}`` ("bwd" only when bidirectional, "initial" only
with ``learn_initial_state``). The state is a :class:`StackState` over layers (a tuple, so
``state[0]`` is the first layer, also ``state.layers[0]``) of :class:`LayerState` (``fwd``) or
:class:`BidirectionalLayerState` (``fwd``, ``bwd``), each the cell's carry with batch shape (B,)::

    ys, state = stack.apply(params, xs)
    state.layers[0].fwd.h          # the first layer's forward carry
    fwd, bwd = state[0]            # positional unpacking works too (bidirectional)

Any cell works (see :mod:`jaxrnn.cells.base`): sizes come from ``jax.eval_shape`` of its ``step``
when it has no ``output_size``; ``recurrent_dropout`` needs its ``recurrent_mask_field``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.base import Cell, check_carry
from jaxrnn.drivers.inputs import check_remat
from jaxrnn.drivers.scan import scan
from jaxrnn.drivers.strategy import STRATEGIES, Strategy


class LayerState(NamedTuple):
    """The final carry of one unidirectional layer."""

    fwd: Any
    saved_as_tuple = True  # checkpoints of jaxrnn 0.1.0 hold (fwd,): they still restore


class BidirectionalLayerState(NamedTuple):
    """The final carries of one bidirectional layer: forward and backward direction."""

    fwd: Any
    bwd: Any
    saved_as_tuple = True  # checkpoints of jaxrnn 0.1.0 hold (fwd, bwd): they still restore


class StackState(tuple):
    """The state of a :class:`StackedRNN`: one :class:`LayerState` (or
    :class:`BidirectionalLayerState`) per layer. A tuple (``state[i]``) and a pytree."""

    __slots__ = ()

    @property
    def layers(self) -> tuple[Any, ...]:
        """The per-layer states, first layer first."""
        return tuple(self)

    def __repr__(self) -> str:
        return f"StackState({', '.join(map(repr, self))})"


jax.tree_util.register_pytree_with_keys(
    StackState,
    lambda s: ([(jax.tree_util.SequenceKey(i), layer) for i, layer in enumerate(s)], None),
    lambda _, layers: StackState(layers),
    flatten_func=lambda s: (tuple(s), None),
)

State = StackState


def dropout(key: jax.Array, rate: float, x: jax.Array, *, broadcast_time: bool = False):
    """Inverted dropout on x [B, T, F]; ``broadcast_time`` shares one mask over T."""
    if rate <= 0.0:
        return x
    shape = (x.shape[0], 1, x.shape[2]) if broadcast_time else x.shape
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


@dataclasses.dataclass(frozen=True)
class StackedRNN:
    """A stack of recurrent layers built from one cell configuration.

    Attributes:
      cell: the cell of every layer (``jaxrnn.LSTM(650)``, ``jaxrnn.GRU(128)``, ...).
      num_layers: number of stacked layers.
      bidirectional: run a second, reversed copy of each layer and concatenate the outputs.
      residual: add each layer's input to its output (layers after the first; sizes must agree).
      dropout: dropout rate between layers (see the module docstring).
      locked_dropout: one between-layer dropout mask per sequence instead of per step.
      recurrent_dropout: variational dropout rate on h_{t-1}.
      learn_initial_state: make the initial carry a trainable parameter.
      strategy, unroll: passed to :func:`jaxrnn.scan`.
      remat: passed to :func:`jaxrnn.scan`: None, or a chunk length k for gradient
        checkpointing over time in every layer (O(T/k + k) stored carries per layer instead of
        O(T) residuals; same results, about one extra forward pass of compute).
    """

    cell: Cell
    num_layers: int = 1
    bidirectional: bool = False
    residual: bool = False
    dropout: float = 0.0
    locked_dropout: bool = False
    recurrent_dropout: float = 0.0
    learn_initial_state: bool = False
    strategy: Strategy = "auto"
    unroll: int = 1
    remat: int | None = None

    def __post_init__(self):
        _checks.check_positive_int("StackedRNN", "num_layers", self.num_layers)
        check_remat("StackedRNN", self.remat)
        _checks.check_fields(
            "StackedRNN", self, positive_ints=("unroll",),
            bools=("bidirectional", "residual", "locked_dropout", "learn_initial_state"),
        )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"StackedRNN: strategy={self.strategy!r}; expected one of {', '.join(STRATEGIES)}"
            )
        for name in ("dropout", "recurrent_dropout"):
            rate = getattr(self, name)
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"StackedRNN: {name} must lie in [0, 1); got {rate}")
        base.check_cell("StackedRNN", self.cell)
        if self.recurrent_dropout > 0 and getattr(self.cell, "recurrent_mask_field", None) is None:
            raise ValueError(
                f"StackedRNN: recurrent_dropout={self.recurrent_dropout} needs a cell that "
                f"declares recurrent_mask_field (the carry field the mask multiplies); "
                f"{type(self.cell).__name__} declares none"
            )

    @property
    def directions(self) -> tuple[str, ...]:
        return ("fwd", "bwd") if self.bidirectional else ("fwd",)

    @property
    def output_size(self) -> int:
        """Features of ``apply``'s outputs; for a cell without ``output_size`` use
        :meth:`output_size_for`."""
        size = getattr(self.cell, "output_size", None)
        if size is None:
            raise AttributeError(
                f"StackedRNN.output_size: cell {type(self.cell).__name__} has no output_size "
                "attribute; use StackedRNN.output_size_for(input_size), which derives it from "
                "the cell's step"
            )
        return size * len(self.directions)

    def output_size_for(self, input_size: int) -> int:
        """Features of ``apply``'s outputs for inputs of ``input_size`` features (any cell)."""
        return base.output_size(self.cell, input_size) * len(self.directions)

    def layer_input_size(self, layer: int, input_size: int) -> int:
        return input_size if layer == 0 else self.output_size_for(input_size)

    def _layer_state(self, carries) -> Any:
        carries = tuple(carries)
        return BidirectionalLayerState(*carries) if self.bidirectional else LayerState(*carries)

    def init(self, key: jax.Array, input_size: int) -> dict[str, Any]:
        _checks.check_key("StackedRNN.init", key)
        _checks.check_positive_int("StackedRNN.init", "input_size", input_size)
        base.check_cell("StackedRNN.init", self.cell)
        layers = []
        for layer in range(self.num_layers):
            keys = jax.random.split(jax.random.fold_in(key, layer), len(self.directions))
            d = self.layer_input_size(layer, input_size)
            layers.append(
                {name: self.cell.init(k, d) for name, k in zip(self.directions, keys, strict=True)}
            )
        params: dict[str, Any] = {"layers": layers}
        if self.learn_initial_state:
            params["initial"] = [
                {name: self.cell.initial_carry(p) for name, p in lp.items()} for lp in layers
            ]
        return params

    def initial_state(self, params, batch_size: int) -> State:
        """Zeros, or the trainable initial state broadcast to the batch."""
        if self.learn_initial_state:
            return StackState(
                self._layer_state(
                    jax.tree.map(
                        lambda c: jnp.broadcast_to(c, (batch_size, *c.shape)), init[name]
                    )
                    for name in self.directions
                )
                for init in params["initial"]
            )
        return StackState(
            self._layer_state(
                self.cell.initial_carry(lp[name], (batch_size,)) for name in self.directions
            )
            for lp in params["layers"]
        )

    def as_state(self, state: Any) -> StackState:
        """``state`` as a :class:`StackState`: nested tuples (layers, then directions) of
        carries, as earlier versions returned them, are accepted and named."""
        if state is None or isinstance(state, StackState):
            return state
        if not isinstance(state, tuple | list):
            raise TypeError(
                f"StackedRNN: initial_state is {type(state).__name__}; expected a StackState "
                "(from initial_state or apply) or a tuple over layers of per-direction carries"
            )
        return StackState(
            self._layer_state(layer) if isinstance(layer, tuple | list) else layer
            for layer in state
        )

    def _check(self, where, params, xs, state, batch_size):
        if len(params["layers"]) != self.num_layers:
            raise ValueError(
                f"{where}: params has {len(params['layers'])} layers; expected {self.num_layers}"
            )
        _checks.check_model_params(where, self, params, xs.shape[-1])
        if state is not None:
            like = jax.eval_shape(lambda p: self.initial_state(p, batch_size), params)
            _checks.check_tree_like(where, "initial_state", state, like)

    def apply(
        self,
        params,
        xs: jax.Array,
        initial_state: State | None = None,
        *,
        lengths: jax.Array | None = None,
        resets: jax.Array | None = None,
        key: jax.Array | None = None,
        train: bool = False,
        time_major: bool = False,
    ) -> tuple[jax.Array, State]:
        """Runs the stack over xs [B, T, D] ([T, B, D] if time_major).

        Returns ``(ys, final_state)`` with ys [B, T, output_size] (the last layer's outputs,
        zero past each length) and the final carry of every layer and direction.
        """
        where = "StackedRNN.apply"
        _checks.check_float(where, "xs", xs)
        if np.ndim(xs) != 3:
            raise ValueError(
                f"{where}: xs has shape {tuple(np.shape(xs))}; expected "
                + ("[T, B, input_size]" if time_major else "[B, T, input_size]")
            )
        if time_major:
            xs = jnp.swapaxes(xs, 0, 1)
            if resets is not None:
                resets = resets.T
        batch = xs.shape[0]
        initial_state = self.as_state(initial_state)
        self._check(where, params, xs, initial_state, batch)
        if initial_state is None:
            initial_state = self.initial_state(params, batch)
        dropping = train and (self.dropout > 0 or self.recurrent_dropout > 0)
        if dropping and key is None:
            raise ValueError(f"{where}: train=True with dropout needs a PRNG key; got key=None")

        finals = []
        h = xs
        for layer, lp in enumerate(params["layers"]):
            outs, carries = [], []
            for d, name in enumerate(self.directions):
                h_mask = None
                if dropping and self.recurrent_dropout > 0:
                    k = jax.random.fold_in(key, 2 * (layer * 2 + d) + 1)
                    rate = self.recurrent_dropout
                    mask_shape = base.recurrent_mask_shape(self.cell, lp[name])
                    keep = jax.random.bernoulli(k, 1.0 - rate, (batch, *mask_shape))
                    h_mask = keep.astype(h.dtype) / (1.0 - rate)
                ys, final = scan(
                    self.cell, lp[name], h, initial_state[layer][d],
                    lengths=lengths, resets=resets, reverse=(name == "bwd"),
                    unroll=self.unroll, strategy=self.strategy, h_mask=h_mask,
                    remat=self.remat,
                )
                outs.append(ys)
                carries.append(final)
            out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
            if self.residual and layer > 0:
                out = out + h
            finals.append(self._layer_state(carries))
            if layer < self.num_layers - 1 and dropping and self.dropout > 0:
                k = jax.random.fold_in(key, 2 * layer * 2)
                out = dropout(k, self.dropout, out, broadcast_time=self.locked_dropout)
            h = out
        if time_major:
            h = jnp.swapaxes(h, 0, 1)
        return h, StackState(finals)

    def step(self, params, state: State, x: jax.Array) -> tuple[State, jax.Array]:
        """One time step of every layer at once, for a batch x [B, D] (sampling, beam search).

        Unidirectional stacks only; no dropout (inference). Returns ``(state, y [B, out])``.
        """
        where = "StackedRNN.step"
        if self.bidirectional:
            raise ValueError(f"{where}: a bidirectional stack cannot be stepped one step at a time")
        _checks.check_float(where, "x", x)
        if np.ndim(x) != 2:
            raise ValueError(f"{where}: x has shape {tuple(np.shape(x))}; expected [B, input_size]")
        state = self.as_state(state)
        self._check(where, params, x, state, x.shape[0])
        new_state = []
        h = x
        for layer, lp in enumerate(params["layers"]):
            check_carry(self.cell, lp["fwd"], state[layer][0], (x.shape[0],), where)
            carry, y = jax.vmap(self.cell.step, in_axes=(None, 0, 0))(lp["fwd"], state[layer][0], h)
            if self.residual and layer > 0:
                y = y + h
            new_state.append(LayerState(carry))
            h = y
        return StackState(new_state), h
