"""Flax adapters: jaxrnn cells inside ``flax.linen`` / ``flax.nnx`` models, and weight conversion.

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

Weight conversion from and to flax's built-in cells (default ``gate_fn=sigmoid`` and
``activation_fn=tanh``; other activations have no jaxrnn equivalent). Flax ``Dense`` kernels are
``[in, out]``; jaxrnn weights are ``[out, in]`` (PyTorch's layout), so kernels are transposed.

``nn.LSTMCell`` and ``nn.OptimizedLSTMCell`` (identical parameter trees; the optimized cell only
concatenates the kernels at call time)::

    ii, if, ig, io: {"kernel": [D, H]}                  (input, no bias)
    hi, hf, hg, ho: {"kernel": [H, H], "bias": [H]}     (hidden, with bias)
    i = sigmoid(x W_ii + h W_hi + b_hi), ... ; c' = f * c + i * g ; h' = o * tanh(c')

    w_ih = [W_ii; W_if; W_ig; W_io]^T   w_hh = [W_hi; ...]^T   b_ih = 0   b_hh = [b_hi; ...]

Flax has no forget-bias offset; ``from_flax_lstm(..., forget_bias=b)`` subtracts ``b`` from the
forget rows of ``b_hh`` so that ``jaxrnn.LSTM(H, forget_bias=b)`` computes the same function.
Flax's carry is ``(c, h)``; jaxrnn's is ``LSTMState(h, c)`` (see :func:`lstm_carry_from_flax`).

``nn.GRUCell`` (the reset gate is applied after the recurrent matmul, as
``jaxrnn.GRU(reset_after=True)``)::

    ir, iz, in: {"kernel": [D, H], "bias": [H]}
    hr, hz:     {"kernel": [H, H]}                       hn: {"kernel": [H, H], "bias": [H]}
    r = sigmoid(x W_ir + b_ir + h W_hr)
    z = sigmoid(x W_iz + b_iz + h W_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h

    w_ih = [W_ir; W_iz; W_in]^T   b_ih = [b_ir; b_iz; b_in]
    w_hh = [W_hr; W_hz; W_hn]^T   b_hh = [0; 0; b_hn]

The reverse direction (``to_flax_*``) folds ``b_hr`` into ``b_ir`` and ``b_hz`` into ``b_iz``
(and, for the LSTM, ``b_ih`` into the hidden biases), which is exact because they are summed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from jaxrnn.cells.base import Params
from jaxrnn.cells.gru import GRU
from jaxrnn.cells.lstm import LSTM, LSTMState
from jaxrnn.recurrence import Strategy
from jaxrnn.recurrence import scan as _scan

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


# ---------------------------------------------------------------------------------------------
# Weight conversion


def _unwrap(flax_params: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accepts ``variables`` ({"params": {...}}) or the params collection itself."""
    if "params" in flax_params and len(flax_params) == 1:
        return flax_params["params"]
    return flax_params


def _get(where: str, tree: Mapping[str, Any], name: str, leaf: str) -> jax.Array:
    if name not in tree or leaf not in tree[name]:
        raise ValueError(
            f"{where}: flax_params has no {name!r}/{leaf!r}; got top-level keys "
            f"{sorted(tree)} (pass variables['params'] of the flax cell)"
        )
    return jnp.asarray(tree[name][leaf])


def _kernels(where: str, tree: Mapping[str, Any], names: list[str], rows: int | None):
    kernels = [_get(where, tree, n, "kernel") for n in names]
    hidden = kernels[0].shape[-1]
    for name, k in zip(names, kernels, strict=True):
        expected = (rows if rows is not None else kernels[0].shape[0], hidden)
        if k.ndim != 2 or k.shape != expected:
            raise ValueError(
                f"{where}: flax_params[{name!r}]['kernel'] has shape {k.shape}; expected "
                f"{expected} = [in_features, hidden_size]"
            )
    return kernels, hidden


def from_flax_lstm(flax_params: Mapping[str, Any], forget_bias: float = 0.0) -> Params:
    """Params of ``nn.LSTMCell`` or ``nn.OptimizedLSTMCell`` as ``jaxrnn.LSTM`` params.

    Args:
      flax_params: ``variables["params"]`` of the flax cell (or ``variables``).
      forget_bias: the ``forget_bias`` of the jaxrnn LSTM that will use the params; it is
        subtracted from the forget rows of ``b_hh`` so that outputs are identical.

    Returns:
      ``{"w_ih" [4H, D], "w_hh" [4H, H], "b_ih" [4H], "b_hh" [4H]}`` for
      ``jaxrnn.LSTM(H, forget_bias=forget_bias)`` (gate order i, f, g, o).
    """
    where = "from_flax_lstm"
    tree = _unwrap(flax_params)
    w_i, hidden = _kernels(where, tree, [f"i{g}" for g in _LSTM_GATES], None)
    w_h, _ = _kernels(where, tree, [f"h{g}" for g in _LSTM_GATES], hidden)
    biases = [_get(where, tree, f"h{g}", "bias") for g in _LSTM_GATES]
    biases[1] = biases[1] - jnp.asarray(forget_bias, biases[1].dtype)
    b_hh = jnp.concatenate(biases)
    return {
        "w_ih": jnp.concatenate(w_i, axis=1).T,
        "w_hh": jnp.concatenate(w_h, axis=1).T,
        "b_ih": jnp.zeros_like(b_hh),
        "b_hh": b_hh,
    }


def to_flax_lstm(params: Params, cell: LSTM | None = None) -> dict[str, dict[str, jax.Array]]:
    """``jaxrnn.LSTM`` params as ``variables["params"]`` of ``nn.LSTMCell`` / ``OptimizedLSTMCell``.

    Args:
      params: jaxrnn LSTM params (``w_ih``, ``w_hh`` and, if present, ``b_ih``, ``b_hh``).
      cell: the jaxrnn LSTM (for ``forget_bias``, folded into the forget bias); default
        ``LSTM(H)``. Projection (``proj_size > 0``) has no flax equivalent.
    """
    where = "to_flax_lstm"
    if cell is not None and cell.proj_size:
        raise ValueError(f"{where}: cell.proj_size={cell.proj_size}; flax LSTMs have no projection")
    w_ih, w_hh = jnp.asarray(params["w_ih"]), jnp.asarray(params["w_hh"])
    rows = w_ih.shape[0]
    if rows % 4 or w_hh.shape != (rows, rows // 4):
        raise ValueError(
            f"{where}: w_ih has shape {w_ih.shape} and w_hh {w_hh.shape}; expected [4H, D] and "
            "[4H, H]"
        )
    bias = jnp.zeros((rows,), w_hh.dtype)
    if "b_ih" in params:
        bias = bias + params["b_ih"]
    if "b_hh" in params:
        bias = bias + params["b_hh"]
    forget_bias = 0.0 if cell is None else cell.forget_bias
    out: dict[str, dict[str, jax.Array]] = {}
    for g, wi, wh, b in zip(
        _LSTM_GATES, jnp.split(w_ih, 4), jnp.split(w_hh, 4), jnp.split(bias, 4), strict=True
    ):
        if g == "f":
            b = b + jnp.asarray(forget_bias, b.dtype)
        out[f"i{g}"] = {"kernel": wi.T}
        out[f"h{g}"] = {"kernel": wh.T, "bias": b}
    return out


def from_flax_gru(flax_params: Mapping[str, Any]) -> Params:
    """Params of ``nn.GRUCell`` as ``jaxrnn.GRU(H, reset_after=True)`` params.

    Args:
      flax_params: ``variables["params"]`` of the flax cell (or ``variables``).

    Returns:
      ``{"w_ih" [3H, D], "w_hh" [3H, H], "b_ih" [3H], "b_hh" [3H]}`` (gate order r, z, n).
    """
    where = "from_flax_gru"
    tree = _unwrap(flax_params)
    w_i, hidden = _kernels(where, tree, [f"i{g}" for g in _GRU_GATES], None)
    w_h, _ = _kernels(where, tree, [f"h{g}" for g in _GRU_GATES], hidden)
    b_i = [_get(where, tree, f"i{g}", "bias") for g in _GRU_GATES]
    b_hn = _get(where, tree, "hn", "bias")
    zeros = jnp.zeros((2 * hidden,), b_hn.dtype)
    return {
        "w_ih": jnp.concatenate(w_i, axis=1).T,
        "w_hh": jnp.concatenate(w_h, axis=1).T,
        "b_ih": jnp.concatenate(b_i),
        "b_hh": jnp.concatenate([zeros, b_hn]),
    }


def to_flax_gru(params: Params, cell: GRU | None = None) -> dict[str, dict[str, jax.Array]]:
    """``jaxrnn.GRU(reset_after=True)`` params as ``variables["params"]`` of ``nn.GRUCell``.

    ``b_hr`` and ``b_hz`` are folded into ``b_ir`` and ``b_iz`` (exact: they are summed).
    """
    where = "to_flax_gru"
    if cell is not None and not cell.reset_after:
        raise ValueError(
            f"{where}: cell.reset_after=False; flax's GRUCell applies the reset gate after the "
            "recurrent matmul (reset_after=True)"
        )
    w_ih, w_hh = jnp.asarray(params["w_ih"]), jnp.asarray(params["w_hh"])
    rows = w_ih.shape[0]
    if rows % 3 or w_hh.shape != (rows, rows // 3):
        raise ValueError(
            f"{where}: w_ih has shape {w_ih.shape} and w_hh {w_hh.shape}; expected [3H, D] and "
            "[3H, H]"
        )
    zeros = jnp.zeros((rows,), w_hh.dtype)
    b_ih = jnp.split(jnp.asarray(params.get("b_ih", zeros)), 3)
    b_hh = jnp.split(jnp.asarray(params.get("b_hh", zeros)), 3)
    w_i, w_h = jnp.split(w_ih, 3), jnp.split(w_hh, 3)
    return {
        "ir": {"kernel": w_i[0].T, "bias": b_ih[0] + b_hh[0]},
        "iz": {"kernel": w_i[1].T, "bias": b_ih[1] + b_hh[1]},
        "in": {"kernel": w_i[2].T, "bias": b_ih[2]},
        "hr": {"kernel": w_h[0].T},
        "hz": {"kernel": w_h[1].T},
        "hn": {"kernel": w_h[2].T, "bias": b_hh[2]},
    }


def lstm_carry_from_flax(carry: tuple[jax.Array, jax.Array]) -> LSTMState:
    """Flax's LSTM carry ``(c, h)`` as ``LSTMState(h, c)``."""
    c, h = carry
    return LSTMState(h=h, c=c)


def lstm_carry_to_flax(carry: LSTMState) -> tuple[jax.Array, jax.Array]:
    """``LSTMState(h, c)`` as flax's LSTM carry ``(c, h)``."""
    return carry.c, carry.h
