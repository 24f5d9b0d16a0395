"""minGRU and minLSTM (Feng et al., 2024, "Were RNNs All We Needed?").

Gates that depend on the input only make the recurrence linear in h, ``h_t = a_t * h_{t-1} + b_t``,
so it runs in parallel over time (:func:`jaxrnn.associative_scan`) as well as step by step
(:func:`jaxrnn.scan`). For one example::

    minGRU:   z_t = sigmoid(W_z x_t + b_z)       h~_t = g(W_h x_t + b_h)
              h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

    minLSTM:  f_t = sigmoid(W_f x_t + b_f)       i_t = sigmoid(W_i x_t + b_i)
              f'_t = f_t / (f_t + i_t)           i'_t = i_t / (f_t + i_t)
              h~_t = g(W_h x_t + b_h)
              h_t = f'_t * h_{t-1} + i'_t * h~_t

With ``log_space=True`` (the paper's numerically stable version, default) ``g(x) = x + 0.5`` for
``x >= 0`` and ``sigmoid(x)`` otherwise, which keeps h~ positive, and the parallel path works on
logarithms (log a_t, log b_t) with log-sum-exp::

    minGRU:   log a = -softplus(k_z)    log b = -softplus(-k_z) + log g(k_h)
    minLSTM:  d = softplus(-k_f) - softplus(-k_i)
              log a = -softplus(d)      log b = -softplus(-d) + log g(k_h)
    log g(x) = log(x + 0.5) for x >= 0, -softplus(-x) otherwise

With ``log_space=False``, ``g`` is the identity and the parallel path multiplies in linear space.

``MinGRU(negative_eigenvalues=True)`` uses the transition ``a_t = 1 - 2 z_t`` in (-1, 1) instead
of ``1 - z_t`` in (0, 1), with the same ``b_t = z_t * h~_t`` (Grazzi et al., 2025, "Unlocking
State-Tracking in Linear RNNs Through Negative Eigenvalues"). Logarithms cannot hold a negative
transition, so it needs ``log_space=False`` (linear space, ``g`` the identity); with
``log_space=True`` the cell raises a ValueError.

Parameter layout (one input matmul, no recurrent weights)::

    minGRU:  w_ih [2H, D]  b_ih [2H]   rows (z, h)
    minLSTM: w_ih [3H, D]  b_ih [3H]   rows (f, i, h)

The carry is ``MinimalState(h [H])``; the output y is h_t.

A cell with a linear recurrence implements, besides the cell protocol (all for one example):
``coefficients(params, xp) -> (a, b)``; ``log_coefficients(params, xp) -> (log a, log b)`` when
``log_space``; ``carry_to_state(carry)`` / ``state_to_carry(state)`` (the state may be complex);
``readout(params, carry, xp) -> y``. :func:`linear_step` is their shared sequential step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.initializers import Initializer, resolve


class MinimalState(NamedTuple):
    h: jax.Array  # [H]


def positive(x: jax.Array) -> jax.Array:
    """g(x) = x + 0.5 for x >= 0, sigmoid(x) otherwise: positive and continuous."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_positive(x: jax.Array) -> jax.Array:
    """log g(x), computed without forming g(x) for negative x."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def linear_step(cell, params, carry, xp, h_mask=None):
    """The sequential step ``s_t = a_t * s_{t-1} + b_t`` of a linear-recurrence cell."""
    state = cell.carry_to_state(carry)
    if h_mask is not None:
        state = state * h_mask.astype(state.dtype)
    a, b = cell.coefficients(params, xp)
    new = cell.state_to_carry(a * state + b)
    return new, cell.readout(params, new, xp)


@dataclasses.dataclass(frozen=True)
class _Minimal:
    hidden_size: int
    log_space: bool = True
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
            type(self).__name__, self, positive_ints=("hidden_size",), bools=("log_space",),
            float_dtypes=("param_dtype",), optional_float_dtypes=("compute_dtype",),
        )
        resolve(self.initializer)

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        g = self.num_gates * self.hidden_size
        return {"w_ih": ("input", (g, input_size)), "b_ih": ("bias", (g,))}

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        where = f"{type(self).__name__}.init"
        _checks.check_key(where, key)
        _checks.check_positive_int(where, "input_size", input_size)
        _checks.check_positive_int(where, "hidden_size", self.hidden_size)
        return base.init_linear_params(
            resolve(self.initializer), key, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> MinimalState:
        return MinimalState(h=jnp.zeros((*batch_shape, self.hidden_size), params["w_ih"].dtype))

    def input_projection(self, params, x):
        return base.matmul(x, params["w_ih"], self.compute_dtype) + params["b_ih"]

    def carry_to_state(self, carry: MinimalState) -> jax.Array:
        return carry.h

    def state_to_carry(self, state: jax.Array) -> MinimalState:
        return MinimalState(h=state)

    def readout(self, params, carry: MinimalState, xp) -> jax.Array:
        return carry.h

    def candidate(self, k_h: jax.Array) -> jax.Array:
        return positive(k_h) if self.log_space else k_h

    def recurrent_step(self, params, carry: MinimalState, xp, h_mask=None):
        new, y = linear_step(self, params, carry, xp, h_mask)
        return MinimalState(h=new.h.astype(carry.h.dtype)), y.astype(carry.h.dtype)

    def step(self, params, carry: MinimalState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))


@dataclasses.dataclass(frozen=True)
class MinGRU(_Minimal):
    """minGRU (Feng et al., 2024); see the module docstring for the equations.

    ``negative_eigenvalues=True`` (with ``log_space=False``): transition 1 - 2 z_t in (-1, 1).
    """

    negative_eigenvalues: bool = False

    num_gates = 2

    def __post_init__(self):
        super().__post_init__()
        if self.negative_eigenvalues and self.log_space:
            raise ValueError(
                "MinGRU: negative_eigenvalues=True needs log_space=False (a negative transition "
                "has no logarithm); got log_space=True"
            )

    def coefficients(self, params, xp):
        k_z, k_h = jnp.split(xp, 2)
        z = jax.nn.sigmoid(k_z)
        a = 1.0 - 2.0 * z if self.negative_eigenvalues else 1.0 - z
        return a, z * self.candidate(k_h)

    def log_coefficients(self, params, xp):
        k_z, k_h = jnp.split(xp, 2)
        return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + log_positive(k_h)


@dataclasses.dataclass(frozen=True)
class MinLSTM(_Minimal):
    """minLSTM (Feng et al., 2024); see the module docstring for the equations."""

    num_gates = 3

    def coefficients(self, params, xp):
        k_f, k_i, k_h = jnp.split(xp, 3)
        f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
        total = f + i
        return f / total, i / total * self.candidate(k_h)

    def log_coefficients(self, params, xp):
        k_f, k_i, k_h = jnp.split(xp, 3)
        diff = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)
        return -jax.nn.softplus(diff), -jax.nn.softplus(-diff) + log_positive(k_h)
