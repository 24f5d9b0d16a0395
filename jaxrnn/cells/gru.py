"""Gated recurrent unit (Cho et al., 2014), in both reset conventions.

For one example, with gates in PyTorch's order (r, z, n)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     # reset_after=True
    n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)     # reset_after=False
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

``reset_after=True`` applies the reset gate after the recurrent matmul, as cuDNN, PyTorch and
Flax do; ``reset_after=False`` applies it before, as Cho et al. (2014) and Keras'
``reset_after=False``.

Parameter layout (PyTorch's)::

    w_ih [3H, D]   w_hh [3H, H]   b_ih [3H]   b_hh [3H]      rows (r, z, n)

The carry is ``GRUState(h [H])``; the output y is h_t.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.initializers import Initializer, resolve


class GRUState(NamedTuple):
    h: jax.Array  # [H]


@dataclasses.dataclass(frozen=True)
class GRU:
    """GRU cell; see the module docstring for the equations and parameter layout."""

    hidden_size: int
    reset_after: bool = True
    use_bias: bool = True
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32
    compute_dtype: Any = None

    num_gates = 3

    recurrent_mask_field = "h"  # variational dropout multiplies h_{t-1} (cells.base)

    input_size = base.input_size_method  # optional protocol method (cells.base)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def __post_init__(self):
        _checks.check_fields(
            "GRU", self, positive_ints=("hidden_size",), bools=("reset_after", "use_bias"),
            float_dtypes=("param_dtype",), optional_float_dtypes=("compute_dtype",),
        )
        resolve(self.initializer)

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        g, h = 3 * self.hidden_size, self.hidden_size
        layout = {"w_ih": ("input", (g, input_size)), "w_hh": ("recurrent", (g, h))}
        if self.use_bias:
            layout |= {"b_ih": ("bias", (g,)), "b_hh": ("bias", (g,))}
        return layout

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_key("GRU.init", key)
        _checks.check_positive_int("GRU.init", "input_size", input_size)
        _checks.check_positive_int("GRU.init", "hidden_size", self.hidden_size)
        return base.init_linear_params(
            resolve(self.initializer), key, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> GRUState:
        return GRUState(h=jnp.zeros((*batch_shape, self.hidden_size), params["w_hh"].dtype))

    def input_projection(self, params, x):
        xp = base.matmul(x, params["w_ih"], self.compute_dtype)
        return xp + params["b_ih"] if self.use_bias else xp

    def recurrent_step(self, params, carry: GRUState, xp, h_mask=None):
        h_prev = carry.h
        h_in = h_prev if h_mask is None else h_prev * h_mask
        hsz = self.hidden_size
        w_hh = params["w_hh"]
        b_hh = params["b_hh"] if self.use_bias else None
        x_r, x_z, x_n = jnp.split(xp, 3)
        if self.reset_after:
            hp = base.matmul(h_in, w_hh, self.compute_dtype)
            if b_hh is not None:
                hp = hp + b_hh
            h_r, h_z, h_n = jnp.split(hp, 3)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * h_n)
        else:
            hp = base.matmul(h_in, w_hh[: 2 * hsz], self.compute_dtype)
            if b_hh is not None:
                hp = hp + b_hh[: 2 * hsz]
            h_r, h_z = jnp.split(hp, 2)
            r = jax.nn.sigmoid(x_r + h_r)
            z = jax.nn.sigmoid(x_z + h_z)
            h_n = base.matmul(r * h_in, w_hh[2 * hsz :], self.compute_dtype)
            if b_hh is not None:
                h_n = h_n + b_hh[2 * hsz :]
            n = jnp.tanh(x_n + h_n)
        h = ((1.0 - z) * n + z * h_prev).astype(h_prev.dtype)
        return GRUState(h=h), h

    def step(self, params, carry: GRUState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))
