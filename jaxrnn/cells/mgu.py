"""Minimal gated unit (Zhou et al., 2016, "Minimal Gated Unit for Recurrent Neural Networks").

A GRU whose reset and update gates are one forget gate. For one example::

    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    n_t = tanh(W_in x_t + b_in + W_hn (f_t * h_{t-1}) + b_hn)
    h_t = (1 - f_t) * h_{t-1} + f_t * n_t

Parameter layout (as the GRU's, with two row blocks (f, n))::

    w_ih [2H, D]   w_hh [2H, H]   b_ih [2H]   b_hh [2H]

The carry is ``MGUState(h [H])``; the output y is h_t.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.initializers import Initializer, resolve


class MGUState(NamedTuple):
    h: jax.Array  # [H]


@dataclasses.dataclass(frozen=True)
class MGU:
    """Minimal gated unit; see the module docstring for the equations and parameter layout."""

    hidden_size: int
    use_bias: bool = True
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32
    compute_dtype: Any = None

    num_gates = 2

    recurrent_mask_field = "h"  # variational dropout multiplies h_{t-1} (cells.base)

    input_size = base.input_size_method  # optional protocol method (cells.base)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def __post_init__(self):
        _checks.check_fields(
            "MGU", self, positive_ints=("hidden_size",), bools=("use_bias",),
            float_dtypes=("param_dtype",), optional_float_dtypes=("compute_dtype",),
        )
        resolve(self.initializer)

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        g, h = 2 * self.hidden_size, self.hidden_size
        layout = {"w_ih": ("input", (g, input_size)), "w_hh": ("recurrent", (g, h))}
        if self.use_bias:
            layout |= {"b_ih": ("bias", (g,)), "b_hh": ("bias", (g,))}
        return layout

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_key("MGU.init", key)
        _checks.check_positive_int("MGU.init", "input_size", input_size)
        _checks.check_positive_int("MGU.init", "hidden_size", self.hidden_size)
        return base.init_linear_params(
            resolve(self.initializer), key, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> MGUState:
        return MGUState(h=jnp.zeros((*batch_shape, self.hidden_size), params["w_hh"].dtype))

    def input_projection(self, params, x):
        xp = base.matmul(x, params["w_ih"], self.compute_dtype)
        return xp + params["b_ih"] if self.use_bias else xp

    def recurrent_step(self, params, carry: MGUState, xp, h_mask=None):
        h_prev = carry.h
        h_in = h_prev if h_mask is None else h_prev * h_mask
        hsz = self.hidden_size
        w_hh = params["w_hh"]
        x_f, x_n = jnp.split(xp, 2)
        h_f = base.matmul(h_in, w_hh[:hsz], self.compute_dtype)
        if self.use_bias:
            h_f = h_f + params["b_hh"][:hsz]
        f = jax.nn.sigmoid(x_f + h_f)
        h_n = base.matmul(f * h_in, w_hh[hsz:], self.compute_dtype)
        if self.use_bias:
            h_n = h_n + params["b_hh"][hsz:]
        n = jnp.tanh(x_n + h_n)
        h = ((1.0 - f) * h_prev + f * n).astype(h_prev.dtype)
        return MGUState(h=h), h

    def step(self, params, carry: MGUState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))
