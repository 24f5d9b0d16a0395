"""DeltaNet (Schlag et al., 2021; Yang et al., 2024) and Gated DeltaNet (Yang et al., 2025).

The delta rule writes v_t at key k_t after removing what the memory held there; Gated DeltaNet
also decays the memory by a data-dependent alpha_t. Per head, for one example::

    q_t = l2(W_q x_t + b_q)      k_t = l2(W_k x_t + b_k)      v_t = W_v x_t + b_v
    beta_t = sigmoid(w_b x_t + b_b)        (2 sigmoid(...) with negative_eigenvalues)
    alpha_t = exp(-exp(a_log) softplus(w_a x_t + b_a))    (Gated DeltaNet; alpha_t = 1 else)
    S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T     S [d_v, d_k]
    y_t = concat_heads(S_t q_t)

with l2(u) = u / sqrt(u^T u + 1e-6). The transition alpha (I - beta k k^T) has the eigenvalues
alpha (d_k - 1 times) and alpha (1 - beta): in [0, 1] for beta in (0, 1), and in (-1, 1] with
``negative_eigenvalues=True``, beta in (0, 2) (Grazzi et al., 2025, "Unlocking State-Tracking in
Linear RNNs Through Negative Eigenvalues"). Papers: Schlag et al. 2021, "Linear Transformers Are
Secretly Fast Weight Programmers"; Yang et al. 2024, "Parallelizing Linear Transformers with the
Delta Rule over Sequence Length"; Yang et al. 2025, "Gated Delta Networks: Improving Mamba2 with
Delta Rule". The block around the cell (short convolutions, output gate and norm) is left out.

Chunkwise-parallel form (:meth:`DeltaNet.chunk_step`): with gamma_t the product of the alphas
since the segment start and S_0 the state there, the WY/UT representation gives, for the steps
of a chunk,

    (I + L) U = diag(beta) V,   (I + L) W = diag(beta gamma) K,
    L_ts = beta_t (gamma_t / gamma_s) k_t^T k_s  (s < t),
    S_t = gamma_t S_0 + sum_{s <= t} (gamma_t / gamma_s) (u_s - S_0 w_s) k_s^T,

one triangular solve per chunk and head instead of t sequential rank-one updates.

Parameter layout (H = hidden_size, K = num_heads, d_v = H / K, d_k = key_size or d_v)::

    w_ih [2 K d_k + H + K (+ K), D]  b_ih [same]  rows (q, k, v, beta (, alpha))
    a_log [K]                        Gated DeltaNet only

Gated DeltaNet initialises exp(a_log) ~ U(1, 16) and the alpha rows' bias so that
softplus(b_a) ~ logU(1e-3, 1e-1) (as Mamba-2's A and dt). The carry is ``DeltaState(h [H],
s [K, d_v, d_k])``, h the last output; the output y is h_t.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn.cells import base, chunked
from jaxrnn.cells.initializers import Initializer, resolve
from jaxrnn.cells.xlstm import check_heads, reject_h_mask


class DeltaState(NamedTuple):
    h: jax.Array  # [H]: last output
    s: jax.Array  # [K, d_v, d_k]: the fast-weight memory


def l2_normalise(u: jax.Array) -> jax.Array:
    """u / sqrt(|u|^2 + 1e-6) over the last axis."""
    return u * jax.lax.rsqrt(jnp.sum(jnp.square(u), axis=-1, keepdims=True) + 1e-6)


def inverse_softplus(y: jax.Array) -> jax.Array:
    return y + jnp.log(-jnp.expm1(-y))


def log_uniform(key, shape, low, high, dtype) -> jax.Array:
    u = jax.random.uniform(key, shape, dtype)
    return jnp.exp(u * (math.log(high) - math.log(low)) + math.log(low))


@dataclasses.dataclass(frozen=True)
class DeltaNet:
    """DeltaNet; see the module docstring for the equations and parameter layout.

    Attributes:
      hidden_size: H, the output size (num_heads values of size d_v = H / num_heads).
      num_heads: K.
      key_size: d_k, the query/key size per head (default d_v); the state has K d_v d_k
        entries.
      negative_eigenvalues: beta in (0, 2) instead of (0, 1) (Grazzi et al., 2025).
      initializer: initialiser of w_ih and b_ih (name or object).
      param_dtype: dtype of the parameters (float32).
    """

    hidden_size: int
    num_heads: int = 1
    key_size: int | None = None
    negative_eigenvalues: bool = False
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32

    gated = False

    def __post_init__(self):
        where = type(self).__name__
        check_heads(where, self.hidden_size, self.num_heads)
        if self.key_size is not None:
            _checks.check_positive_int(where, "key_size", self.key_size)

    input_size = base.input_size_method  # optional protocol method (cells.base)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def key_dim(self) -> int:
        return self.key_size or self.head_size

    def _sizes(self) -> tuple[int, ...]:
        k, dk = self.num_heads, self.key_dim
        return (k * dk, k * dk, self.hidden_size, k) + ((k,) if self.gated else ())

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        rows = sum(self._sizes())
        return {"w_ih": ("input", (rows, input_size)), "b_ih": ("bias", (rows,))}

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        where = f"{type(self).__name__}.init"
        _checks.check_positive_int(where, "input_size", input_size)
        k_lin, k_a, k_dt = jax.random.split(key, 3)
        params = base.init_linear_params(
            resolve(self.initializer), k_lin, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )
        if not self.gated:
            return params
        k, dt = self.num_heads, self.param_dtype
        start = sum(self._sizes()[:-1])
        dt_bias = inverse_softplus(log_uniform(k_dt, (k,), 1e-3, 1e-1, dt))
        a = jax.random.uniform(k_a, (k,), dt, 1.0, 16.0)
        return {"w_ih": params["w_ih"], "b_ih": params["b_ih"].at[start:].set(dt_bias),
                "a_log": jnp.log(a)}

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> DeltaState:
        dt = params["w_ih"].dtype
        return DeltaState(
            h=jnp.zeros((*batch_shape, self.hidden_size), dt),
            s=jnp.zeros((*batch_shape, self.num_heads, self.head_size, self.key_dim), dt),
        )

    def input_projection(self, params, x):
        return base.matmul(x, params["w_ih"], None) + params["b_ih"]

    def _heads(self, params, xp):
        """q, k [..., K, d_k], v [..., K, d_v], beta and log alpha [..., K] from xp."""
        k, dk, dv, lead = self.num_heads, self.key_dim, self.head_size, xp.shape[:-1]
        parts = jnp.split(xp, np.cumsum(self._sizes())[:-1], axis=-1)
        q = l2_normalise(parts[0].reshape(*lead, k, dk))
        key = l2_normalise(parts[1].reshape(*lead, k, dk))
        v = parts[2].reshape(*lead, k, dv)
        beta = jax.nn.sigmoid(parts[3])
        if self.negative_eigenvalues:
            beta = 2.0 * beta
        if self.gated:
            rate = jnp.exp(params["a_log"]).reshape((1,) * len(lead) + (k,))
            log_alpha = -rate * jax.nn.softplus(parts[4])
        else:
            log_alpha = jnp.zeros_like(beta)
        return q, key, v, beta, log_alpha

    def recurrent_step(self, params, carry: DeltaState, xp, h_mask=None):
        reject_h_mask(self, h_mask)
        q, k, v, beta, log_alpha = self._heads(params, xp)
        s = carry.s
        removed = s - beta[:, None, None] * (jnp.einsum("hvk,hk->hv", s, k)[:, :, None]
                                             * k[:, None, :])
        s = jnp.exp(log_alpha)[:, None, None] * removed + beta[:, None, None] * (
            v[:, :, None] * k[:, None, :])
        h = jnp.einsum("hvk,hk->hv", s, q).reshape(self.hidden_size)
        return DeltaState(h=h, s=s), h

    def step(self, params, carry: DeltaState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))

    def chunk_step(
        self, params: Any, carry: DeltaState, xs: jax.Array, *, starts: jax.Array,
        valid: jax.Array, initial_carry: DeltaState,
    ) -> tuple[DeltaState, jax.Array]:
        """C steps at once (the WY/UT form of the module docstring); equals C calls of
        :meth:`step`.

        Args:
          params: the cell's params.
          carry: the carry before the chunk (one example).
          xs: inputs [C, input_size].
          starts: bool [C]; the carry returns to ``initial_carry`` before step t.
          valid: bool [C]; False steps are padding (carry unchanged, output zero).
          initial_carry: the carry a reset returns to.

        Returns:
          ``(carry, ys)`` with ys [C, H].
        """
        chunked.check_chunk(self, params, xs, starts, valid)
        steps, dv = xs.shape[0], self.head_size
        xp = jax.vmap(self.input_projection, in_axes=(None, 0))(params, xs)
        q, k, v, beta, log_alpha = self._heads(params, xp)
        seg = chunked.segments(starts, valid)
        beta = jnp.where(valid[:, None], beta, 0.0)
        log_alpha = jnp.where(valid[:, None], log_alpha, 0.0)
        cum = jnp.cumsum(log_alpha, axis=0)
        gamma = jnp.exp(cum - (cum - log_alpha)[seg.start])  # decay since the segment start
        same = seg.same[:, :, None]
        ratio = chunked.masked_exp(same, cum[:, None, :] - cum[None, :, :])  # [t, s, K]
        strict = (seg.same & ~jnp.eye(steps, dtype=bool))[:, :, None]
        lower = jnp.where(strict, beta[:, None, :] * ratio * jnp.einsum("thk,shk->tsh", k, k),
                          0.0)
        rhs = jnp.concatenate([beta[..., None] * v, (beta * gamma)[..., None] * k], axis=-1)
        # unit_diagonal: the solver reads only the strictly lower part, i.e. solves (I + L) X.
        solved = jax.scipy.linalg.solve_triangular(
            jnp.moveaxis(lower, 2, 0), jnp.moveaxis(rhs, 1, 0), lower=True, unit_diagonal=True
        )
        u, w = jnp.moveaxis(solved[..., :dv], 0, 1), jnp.moveaxis(solved[..., dv:], 0, 1)
        delta = u - chunked.pick(seg.first, jnp.einsum("hvk,shk->shv", carry.s, w),
                                 jnp.einsum("hvk,shk->shv", initial_carry.s, w))
        sq = chunked.pick(seg.first, jnp.einsum("hvk,thk->thv", carry.s, q),
                          jnp.einsum("hvk,thk->thv", initial_carry.s, q))
        scores = ratio * jnp.einsum("thk,shk->tsh", q, k)
        ys = gamma[..., None] * sq + jnp.einsum("tsh,shv->thv", scores, delta)
        ys = ys.reshape(steps, self.hidden_size)

        start_state = jnp.where(seg.first[-1], carry.s, initial_carry.s)
        s = gamma[-1][:, None, None] * start_state + jnp.einsum(
            "sh,shv,shk->hvk", ratio[-1], delta, k)
        h = chunked.last_valid(valid, ys, carry.h)
        return DeltaState(h=h, s=s), chunked.zero_invalid(valid, ys)


@dataclasses.dataclass(frozen=True)
class GatedDeltaNet(DeltaNet):
    """Gated DeltaNet (Yang et al., 2025): DeltaNet with a decay alpha_t in (0, 1); see the
    module docstring. Same attributes as :class:`DeltaNet`."""

    gated = True
