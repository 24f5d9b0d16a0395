"""Weights and carries from and to flax's built-in cells (LSTMCell, OptimizedLSTMCell, GRUCell).

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

import jax
import jax.numpy as jnp

from jaxrnn.cells.base import Params
from jaxrnn.cells.gru import GRU
from jaxrnn.cells.lstm import LSTM, LSTMState

_LSTM_GATES = ("i", "f", "g", "o")
_GRU_GATES = ("r", "z", "n")


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
