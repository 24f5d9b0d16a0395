"""Mamba's selective state space, the S6 scan (Gu & Dao, 2023, "Mamba: Linear-Time Sequence
Modeling with Selective State Spaces"), as a cell.

Each of H channels has a diagonal state of N entries; the step size Delta and the matrices B, C
depend on the input (selectivity). For one example::

    u_t = W_u x_t + b_u                         [H]     channel inputs
    Delta_t = softplus(W_d x_t + b_d)           [H]
    B_t = W_B x_t + b_B,  C_t = W_C x_t + b_C   [N]     shared by the channels
    A = -exp(A_log)                             [H, N]  (S4D-real init: A[h, n] = -(n + 1))
    a_t = exp(Delta_t A)                        [H, N]  zero-order hold of A
    s_t = a_t * s_{t-1} + (Delta_t u_t) B_t^T   [H, N]  (Mamba's simplified B discretisation)
    y_t = s_t C_t + D * u_t                     [H]

With ``negative_eigenvalues=True`` the transition is ``2 a_t - 1`` in (-1, 1) instead of a_t in
(0, 1) (Grazzi et al., 2025, "Unlocking State-Tracking in Linear RNNs Through Negative
Eigenvalues"), which lets the recurrence flip signs (parity). The block around the scan (input
and gate projections, causal convolution, SiLU gate) is not part of the cell; here Delta, B and
C come from the cell's input directly, through one dense layer (Mamba's low-rank Delta
projection is full-rank here).

Parameter layout::

    w_ih [2H + 2N, D]  b_ih [2H + 2N]   rows (u, Delta, B, C)
    a_log [H, N]                        A = -exp(a_log)
    d_skip [H]                          D, initialised to 1

The Delta rows' bias starts at softplus^-1 of logU(dt_min, dt_max) (Mamba's dt init), the other
rows from the initializer. The recurrence is linear in s, so the cell also runs through
:func:`jaxrnn.associative_scan` (state flattened to [H N]). The carry is ``MambaState(h [H, N])``
(the state s); the output is y_t.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.delta import inverse_softplus, log_uniform
from jaxrnn.cells.initializers import Initializer, resolve
from jaxrnn.cells.xlstm import reject_h_mask


class MambaState(NamedTuple):
    h: jax.Array  # [H, N]: the selective state s


@dataclasses.dataclass(frozen=True)
class Mamba:
    """S6 selective scan; see the module docstring for the equations and parameter layout.

    Attributes:
      hidden_size: H, the number of channels (input of the state, and output size).
      state_size: N, the state entries per channel (16 in Mamba).
      negative_eigenvalues: transition 2 a_t - 1 in (-1, 1) (Grazzi et al., 2025).
      dt_min, dt_max: range of the initial step sizes softplus(b_d).
      initializer: initialiser of w_ih and b_ih (name or object).
      param_dtype: dtype of the parameters (float32).
    """

    hidden_size: int
    state_size: int = 16
    negative_eigenvalues: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        _checks.check_positive_int("Mamba", "hidden_size", self.hidden_size)
        _checks.check_positive_int("Mamba", "state_size", self.state_size)
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ValueError(
                f"Mamba: need 0 < dt_min <= dt_max; got dt_min={self.dt_min}, "
                f"dt_max={self.dt_max}"
            )

    input_size = base.input_size_method  # optional protocol method (cells.base)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        rows = 2 * self.hidden_size + 2 * self.state_size
        return {"w_ih": ("input", (rows, input_size)), "b_ih": ("bias", (rows,))}

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_positive_int("Mamba.init", "input_size", input_size)
        h, n, dt = self.hidden_size, self.state_size, self.param_dtype
        k_lin, k_dt = jax.random.split(key)
        params = base.init_linear_params(
            resolve(self.initializer), k_lin, self.param_layout(input_size), h, dt
        )
        dt_bias = inverse_softplus(log_uniform(k_dt, (h,), self.dt_min, self.dt_max, dt))
        a = jnp.broadcast_to(jnp.arange(1, n + 1, dtype=dt), (h, n))
        return {
            "w_ih": params["w_ih"],
            "b_ih": params["b_ih"].at[h : 2 * h].set(dt_bias),
            "a_log": jnp.log(a),
            "d_skip": jnp.ones((h,), dt),
        }

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> MambaState:
        shape = (*batch_shape, self.hidden_size, self.state_size)
        return MambaState(h=jnp.zeros(shape, params["w_ih"].dtype))

    def input_projection(self, params, x):
        return base.matmul(x, params["w_ih"], None) + params["b_ih"]

    def _split(self, xp):
        h = self.hidden_size
        return xp[:h], jax.nn.softplus(xp[h : 2 * h]), xp[2 * h : -self.state_size], \
            xp[-self.state_size :]

    def coefficients(self, params, xp):
        """(a_t, b_t), both flattened to [H N], for ``s_t = a_t * s_{t-1} + b_t``."""
        u, delta, b_in, _ = self._split(xp)
        a = jnp.exp(-delta[:, None] * jnp.exp(params["a_log"]))
        if self.negative_eigenvalues:
            a = 2.0 * a - 1.0
        b = (delta * u)[:, None] * b_in[None, :]
        return a.reshape(-1), b.reshape(-1)

    def carry_to_state(self, carry: MambaState) -> jax.Array:
        return carry.h.reshape(*carry.h.shape[:-2], -1)

    def state_to_carry(self, state: jax.Array) -> MambaState:
        return MambaState(h=state.reshape(*state.shape[:-1], self.hidden_size, self.state_size))

    def readout(self, params, carry: MambaState, xp) -> jax.Array:
        u, _, _, c_in = self._split(xp)
        return carry.h @ c_in + params["d_skip"] * u

    def recurrent_step(self, params, carry: MambaState, xp, h_mask=None):
        reject_h_mask(self, h_mask)
        a, b = self.coefficients(params, xp)
        new = self.state_to_carry(a * self.carry_to_state(carry) + b)
        return new, self.readout(params, new, xp)

    def step(self, params, carry: MambaState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))
