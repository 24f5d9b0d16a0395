"""Diagonal linear recurrences: LRU (Orvieto et al., 2023) and Griffin's RG-LRU (De et al., 2024).

Both are linear in the state, ``s_t = a_t * s_{t-1} + b_t``, so they run in parallel over time
(:func:`jaxrnn.drivers.parallel.associative_scan`) and step by step (:func:`jaxrnn.scan`).

LRU, "Resurrecting Recurrent Neural Networks for Long Sequences", for one example::

    lambda = exp(-exp(nu_log) + i exp(theta_log))    complex diagonal, |lambda| < 1
    gamma  = exp(gamma_log)                           normalisation, init sqrt(1 - |lambda|^2)
    s_t    = lambda * s_{t-1} + gamma * (B x_t)       s complex [N], B complex [N, D]
    y_t    = Re(C s_t) + D x_t                        C complex [H, N]

|lambda| is initialised uniformly on the ring [r_min, r_max] (area-uniform), its phase in
[0, max_phase]. The paper's D is a diagonal skip (input size = output size); here it is a dense
[H, D] matrix so the two sizes may differ.

Parameter layout::

    w_ih [2N, D] (rows: Re B, then Im B)   nu_log, theta_log, gamma_log [N]
    c_re, c_im [H, N]                       w_skip [H, D]

The carry is ``LRUState(h = Re s [N], h_imag = Im s [N])``.

RG-LRU, the real-gated linear recurrent unit of Griffin, for one example::

    u_t = W_u x_t + b_u                  (Griffin's input branch; here one dense layer)
    r_t = sigmoid(W_a x_t + b_a)         recurrence gate
    i_t = sigmoid(W_x x_t + b_x)         input gate
    log a_t = -c * r_t * softplus(-Lambda)        i.e. a_t = sigmoid(Lambda) ** (c r_t), c = 8
    h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t)

sigmoid(Lambda) is initialised in [a_min, a_max] = [0.9, 0.999] (area-uniform, as recurrentgemma).
With ``negative_eigenvalues=True`` the transition is ``a'_t = 2 a_t - 1`` in (-1, 1) and the
normaliser ``sqrt(1 - a'_t^2) = 2 sqrt(a_t (1 - a_t))`` (Grazzi et al., 2025, "Unlocking
State-Tracking in Linear RNNs Through Negative Eigenvalues"); the parameters are the same.
Griffin's gates are block-diagonal and its reference code skips the sqrt normalisation on a
segment's first token; here the gates are dense and every step is normalised.

Parameter layout::

    w_ih [3H, D]  b_ih [3H]  rows (u, r, i)        a_logit [H] (Lambda)

The carry is ``RGLRUState(h [H])``; the output y is h_t.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.initializers import Initializer, resolve
from jaxrnn.cells.minimal import linear_step


class LRUState(NamedTuple):
    h: jax.Array  # [N]: real part of the complex state
    h_imag: jax.Array  # [N]: imaginary part


class RGLRUState(NamedTuple):
    h: jax.Array  # [H]


def _ring(key, shape, r_min, r_max, dtype):
    """Radii area-uniform on the ring r_min <= r <= r_max."""
    u = jax.random.uniform(key, shape, dtype)
    return jnp.sqrt(u * (r_max**2 - r_min**2) + r_min**2)


@dataclasses.dataclass(frozen=True)
class LRU:
    """Linear recurrent unit; see the module docstring for the equations and parameter layout.

    Attributes:
      hidden_size: H, the output size.
      state_size: N, the complex state size (default H).
      r_min, r_max: ring of the initial |lambda|.
      max_phase: the initial phases lie in [0, max_phase].
      param_dtype: dtype of the parameters (float32).
    """

    hidden_size: int
    state_size: int | None = None
    r_min: float = 0.9
    r_max: float = 0.999
    max_phase: float = 2 * math.pi
    param_dtype: Any = jnp.float32

    recurrent_mask_field = "h"  # variational dropout multiplies h_{t-1} (cells.base)

    input_size = base.input_size_method  # optional protocol method (cells.base)

    def __post_init__(self):
        _checks.check_fields(
            "LRU", self, positive_ints=("hidden_size",), reals=("r_min", "r_max"),
            positive_reals=("max_phase",), float_dtypes=("param_dtype",),
        )
        if self.state_size is not None:
            _checks.check_positive_int("LRU", "state_size", self.state_size)
        if not 0.0 <= self.r_min < self.r_max <= 1.0:
            raise ValueError(
                f"LRU: need 0 <= r_min < r_max <= 1; got r_min={self.r_min}, r_max={self.r_max}"
            )

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def num_states(self) -> int:
        return self.state_size or self.hidden_size

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_key("LRU.init", key)
        _checks.check_positive_int("LRU.init", "input_size", input_size)
        _checks.check_positive_int("LRU.init", "hidden_size", self.hidden_size)
        _checks.check_positive_int("LRU.init", "state_size", self.num_states)
        n, h, d, dt = self.num_states, self.hidden_size, input_size, self.param_dtype
        k_r, k_p, k_b, k_c1, k_c2, k_d = jax.random.split(key, 6)
        radius = _ring(k_r, (n,), self.r_min, self.r_max, dt)
        phase = self.max_phase * jax.random.uniform(k_p, (n,), dt, minval=1e-3)
        nu_log = jnp.log(-jnp.log(radius))
        return {
            "w_ih": jax.random.normal(k_b, (2 * n, d), dt) / math.sqrt(2 * d),
            "nu_log": nu_log,
            "theta_log": jnp.log(phase),
            "gamma_log": 0.5 * jnp.log1p(-jnp.square(radius)),
            "c_re": jax.random.normal(k_c1, (h, n), dt) / math.sqrt(n),
            "c_im": jax.random.normal(k_c2, (h, n), dt) / math.sqrt(n),
            "w_skip": jax.random.normal(k_d, (h, d), dt) / math.sqrt(d),
        }

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> LRUState:
        zeros = jnp.zeros((*batch_shape, self.num_states), params["w_ih"].dtype)
        return LRUState(h=zeros, h_imag=zeros)

    def input_projection(self, params, x):
        """[Re(B x), Im(B x), D x], shape [2N + H]."""
        return jnp.concatenate([base.matmul(x, params["w_ih"], None),
                                base.matmul(x, params["w_skip"], None)])

    def coefficients(self, params, xp):
        n = self.num_states
        radius = jnp.exp(-jnp.exp(params["nu_log"]))
        theta = jnp.exp(params["theta_log"])
        a = jax.lax.complex(radius * jnp.cos(theta), radius * jnp.sin(theta))
        gamma = jnp.exp(params["gamma_log"])
        b = jax.lax.complex(gamma * xp[:n], gamma * xp[n : 2 * n])
        return a, b

    def carry_to_state(self, carry: LRUState) -> jax.Array:
        return jax.lax.complex(carry.h, carry.h_imag)

    def state_to_carry(self, state: jax.Array) -> LRUState:
        return LRUState(h=jnp.real(state), h_imag=jnp.imag(state))

    def readout(self, params, carry: LRUState, xp) -> jax.Array:
        skip = xp[2 * self.num_states :]
        return params["c_re"] @ carry.h - params["c_im"] @ carry.h_imag + skip

    def recurrent_step(self, params, carry: LRUState, xp, h_mask=None):
        return linear_step(self, params, carry, xp, h_mask)

    def step(self, params, carry: LRUState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))


@dataclasses.dataclass(frozen=True)
class RGLRU:
    """Griffin's real-gated LRU; see the module docstring for the equations and layout.

    Attributes:
      hidden_size: H.
      c: the gate exponent's scale (8 in Griffin).
      a_min, a_max: range of the initial sigmoid(Lambda).
      initializer: initialiser of w_ih and b_ih.
      negative_eigenvalues: transition 2 a_t - 1 in (-1, 1) instead of a_t in (0, 1).
    """

    hidden_size: int
    c: float = 8.0
    a_min: float = 0.9
    a_max: float = 0.999
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32
    compute_dtype: Any = None
    negative_eigenvalues: bool = False

    num_gates = 3

    recurrent_mask_field = "h"  # variational dropout multiplies h_{t-1} (cells.base)

    input_size = base.input_size_method  # optional protocol method (cells.base)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def __post_init__(self):
        _checks.check_fields(
            "RGLRU", self, positive_ints=("hidden_size",), positive_reals=("c",),
            reals=("a_min", "a_max"), float_dtypes=("param_dtype",),
            optional_float_dtypes=("compute_dtype",),
        )
        if not 0.0 < self.a_min < self.a_max < 1.0:
            raise ValueError(
                f"RGLRU: need 0 < a_min < a_max < 1; got a_min={self.a_min}, a_max={self.a_max}"
            )
        resolve(self.initializer)

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        g = 3 * self.hidden_size
        return {"w_ih": ("input", (g, input_size)), "b_ih": ("bias", (g,))}

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_key("RGLRU.init", key)
        _checks.check_positive_int("RGLRU.init", "input_size", input_size)
        _checks.check_positive_int("RGLRU.init", "hidden_size", self.hidden_size)
        k_dense, k_a = jax.random.split(key)
        params = base.init_linear_params(
            resolve(self.initializer), k_dense, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )
        a = _ring(k_a, (self.hidden_size,), self.a_min, self.a_max, self.param_dtype)
        return params | {"a_logit": jnp.log(a) - jnp.log1p(-a)}

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> RGLRUState:
        return RGLRUState(h=jnp.zeros((*batch_shape, self.hidden_size), params["w_ih"].dtype))

    def input_projection(self, params, x):
        return base.matmul(x, params["w_ih"], self.compute_dtype) + params["b_ih"]

    def coefficients(self, params, xp):
        u, k_r, k_i = jnp.split(xp, 3)
        log_a = -self.c * jax.nn.sigmoid(k_r) * jax.nn.softplus(-params["a_logit"])
        a = jnp.exp(log_a)
        if self.negative_eigenvalues:
            # sqrt(1 - (2a - 1)^2) = 2 sqrt(a (1 - a)), 1 - a via expm1, bounded as below.
            norm = 2.0 * jnp.sqrt(jnp.maximum(-a * jnp.expm1(log_a), 1e-12))
            return 2.0 * a - 1.0, norm * (jax.nn.sigmoid(k_i) * u)
        # sqrt(1 - a^2) via expm1 (accurate for a near 1), bounded away from 0 for the gradient.
        norm = jnp.sqrt(jnp.maximum(-jnp.expm1(2.0 * log_a), 1e-12))
        return a, norm * (jax.nn.sigmoid(k_i) * u)

    def carry_to_state(self, carry: RGLRUState) -> jax.Array:
        return carry.h

    def state_to_carry(self, state: jax.Array) -> RGLRUState:
        return RGLRUState(h=state)

    def readout(self, params, carry: RGLRUState, xp) -> jax.Array:
        return carry.h

    def recurrent_step(self, params, carry: RGLRUState, xp, h_mask=None):
        new, y = linear_step(self, params, carry, xp, h_mask)
        return RGLRUState(h=new.h.astype(carry.h.dtype)), y.astype(carry.h.dtype)

    def step(self, params, carry: RGLRUState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))
