"""Elman recurrent network (Elman, 1990), as ``torch.nn.RNN``.

For one example::

    h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),     act = tanh or relu

Parameter layout (PyTorch's)::

    w_ih [H, D]   w_hh [H, H]   b_ih [H]   b_hh [H]

The carry is ``ElmanState(h [H])``; the output y is h_t.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.initializers import Initializer, resolve

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class ElmanState(NamedTuple):
    h: jax.Array  # [H]


@dataclasses.dataclass(frozen=True)
class Elman:
    """Elman RNN cell; see the module docstring for the equations and parameter layout."""

    hidden_size: int
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    use_bias: bool = True
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32
    compute_dtype: Any = None

    num_gates = 1

    recurrent_mask_field = "h"  # variational dropout multiplies h_{t-1} (cells.base)

    input_size = base.input_size_method  # optional protocol method (cells.base)

    def __post_init__(self):
        if self.nonlinearity not in _ACTIVATIONS:
            raise ValueError(
                f"Elman: nonlinearity={self.nonlinearity!r}; expected 'tanh' or 'relu'"
            )
        _checks.check_fields(
            "Elman", self, positive_ints=("hidden_size",), bools=("use_bias",),
            float_dtypes=("param_dtype",), optional_float_dtypes=("compute_dtype",),
        )
        resolve(self.initializer)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        h = self.hidden_size
        layout = {"w_ih": ("input", (h, input_size)), "w_hh": ("recurrent", (h, h))}
        if self.use_bias:
            layout |= {"b_ih": ("bias", (h,)), "b_hh": ("bias", (h,))}
        return layout

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_key("Elman.init", key)
        _checks.check_positive_int("Elman.init", "input_size", input_size)
        _checks.check_positive_int("Elman.init", "hidden_size", self.hidden_size)
        return base.init_linear_params(
            resolve(self.initializer), key, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> ElmanState:
        return ElmanState(h=jnp.zeros((*batch_shape, self.hidden_size), params["w_hh"].dtype))

    def input_projection(self, params, x):
        xp = base.matmul(x, params["w_ih"], self.compute_dtype)
        return xp + params["b_ih"] if self.use_bias else xp

    def recurrent_step(self, params, carry: ElmanState, xp, h_mask=None):
        h_in = carry.h if h_mask is None else carry.h * h_mask
        z = xp + base.matmul(h_in, params["w_hh"], self.compute_dtype)
        if self.use_bias:
            z = z + params["b_hh"]
        h = _ACTIVATIONS[self.nonlinearity](z).astype(carry.h.dtype)
        return ElmanState(h=h), h

    def step(self, params, carry: ElmanState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))
