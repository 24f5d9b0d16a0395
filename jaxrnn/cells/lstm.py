"""Long short-term memory (Hochreiter & Schmidhuber, 1997; forget gate: Gers et al., 2000).

For one example, with gates in PyTorch's order (i, f, g, o)::

    z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh          # [4H], rows (i, f, g, o)
    i_t = sigmoid(z_i)
    f_t = sigmoid(z_f + forget_bias)
    g_t = tanh(z_g)
    o_t = sigmoid(z_o)
    c_t = f_t * c_t-1 + i_t * g_t
    h_t = o_t * tanh(c_t)
    h_t = W_hr h_t                            # only with proj_size > 0 (Sak et al., 2014)

``forget_bias`` is an offset added to the forget gate's pre-activation: the TensorFlow
reproduction of Zaremba et al. (2014) uses 0 (the default here, and PyTorch's), Jozefowicz et al.
(2015) recommend 1 (haiku hard-codes 1).

Parameter layout (PyTorch's ``weight_ih_l0`` etc., so weights move over unchanged)::

    w_ih [4H, D]   w_hh [4H, R]   b_ih [4H]   b_hh [4H]   w_hr [P, H] (proj_size = P > 0)

with R = P if proj_size else H. The carry is ``LSTMState(h [R], c [H])``; the output y is h_t.

This cell is the "NP" (no peepholes) member of the LSTM family of Greff et al. (2017); the
variants of :mod:`jaxrnn.variants` reuse it by changing :meth:`LSTM.gate_update`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.initializers import Initializer, resolve


class LSTMState(NamedTuple):
    h: jax.Array  # [R]: hidden state (projected when proj_size > 0)
    c: jax.Array  # [H]: cell state, always float32 or the params' dtype


@dataclasses.dataclass(frozen=True)
class LSTM:
    """LSTM cell; see the module docstring for the equations and parameter layout.

    Attributes:
      hidden_size: H, the cell-state size.
      forget_bias: offset added to the forget gate's pre-activation (0 as PyTorch/Zaremba,
        1 as Jozefowicz et al. 2015).
      proj_size: P > 0 adds the output projection ``h_t = W_hr (o_t * tanh(c_t))``.
      use_bias: include ``b_ih`` and ``b_hh``.
      initializer: an initialiser (``jaxrnn.PyTorchUniform()``, ``jaxrnn.Uniform(0.1)``,
        ``jaxrnn.Orthogonal()``) or the name "pytorch" / "orthogonal".
      param_dtype: dtype of the parameters (float32).
      compute_dtype: dtype of the matmul operands (e.g. jnp.bfloat16); products are accumulated
        in float32 and the cell state stays float32.
    """

    hidden_size: int
    forget_bias: float = 0.0
    proj_size: int = 0
    use_bias: bool = True
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32
    compute_dtype: Any = None

    num_gates = 4

    recurrent_mask_field = "h"  # variational dropout multiplies h_{t-1} (cells.base)

    input_size = base.input_size_method  # optional protocol method (cells.base)

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def __post_init__(self):
        _checks.check_fields(
            type(self).__name__, self, positive_ints=("hidden_size",),
            nonnegative_ints=("proj_size",), reals=("forget_bias",), bools=("use_bias",),
            float_dtypes=("param_dtype",), optional_float_dtypes=("compute_dtype",),
        )
        resolve(self.initializer)

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        """``{name: (role, shape)}`` for every parameter."""
        g, h, r = self.num_gates * self.hidden_size, self.hidden_size, self.output_size
        layout = {"w_ih": ("input", (g, input_size)), "w_hh": ("recurrent", (g, r))}
        if self.use_bias:
            layout |= {"b_ih": ("bias", (g,)), "b_hh": ("bias", (g,))}
        if self.proj_size:
            layout["w_hr"] = ("projection", (self.proj_size, h))
        return layout

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_key("LSTM.init", key)
        _checks.check_positive_int("LSTM.init", "input_size", input_size)
        _checks.check_positive_int("LSTM.init", "hidden_size", self.hidden_size)
        return base.init_linear_params(
            resolve(self.initializer), key, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )

    def initial_carry(self, params: base.Params, batch_shape: tuple[int, ...] = ()) -> LSTMState:
        dtype = params["w_hh"].dtype
        return LSTMState(
            h=jnp.zeros((*batch_shape, self.output_size), dtype),
            c=jnp.zeros((*batch_shape, self.hidden_size), dtype),
        )

    def input_projection(self, params: base.Params, x: jax.Array) -> jax.Array:
        xp = base.matmul(x, params["w_ih"], self.compute_dtype)
        return xp + params["b_ih"] if self.use_bias else xp

    def recurrent_step(self, params, carry: LSTMState, xp, h_mask=None):
        h_prev = carry.h if h_mask is None else carry.h * h_mask
        z = xp + base.matmul(h_prev, params["w_hh"], self.compute_dtype)
        if self.use_bias:
            z = z + params["b_hh"]
        c, h = self.gate_update(z, carry.c)
        if self.proj_size:
            h = base.matmul(h, params["w_hr"], self.compute_dtype)
        h = h.astype(carry.h.dtype)
        return LSTMState(h=h, c=c), h

    def gate_update(self, z: jax.Array, c_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
        """From pre-activations z [4H] (i, f, g, o) and c_{t-1} to (c_t, o_t * tanh(c_t))."""
        i, f, g, o = jnp.split(z, 4)
        c = jax.nn.sigmoid(f + self.forget_bias) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(g)
        c = c.astype(c_prev.dtype)
        return c, jax.nn.sigmoid(o) * jnp.tanh(c)

    def step(self, params, carry: LSTMState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))
