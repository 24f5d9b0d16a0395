"""sLSTM and mLSTM, the two cells of xLSTM (Beck et al., 2024, "xLSTM: Extended Long Short-Term
Memory"), with exponential gating stabilised by a state m_t.

sLSTM, for one example, with the recurrent weights R block-diagonal over ``num_heads`` heads::

    [i~, f~, z~, o~]_t = W x_t + R h_{t-1} + b          (f~ also gets + forget_bias)
    log f_t = f~_t (forget_gate="exp")  or  log sigmoid(f~_t) (forget_gate="sigmoid")
    m_t = max(log f_t + m_{t-1}, i~_t)                  stabiliser
    i'_t = exp(i~_t - m_t)      f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t = f'_t c_{t-1} + i'_t tanh(z~_t)                cell state
    n_t = f'_t n_{t-1} + i'_t                           normaliser
    h_t = sigmoid(o~_t) * c_t / n_t

mLSTM, per head (``num_heads`` heads of key size d_k and value size d_v = H / num_heads)::

    q_t = W_q x_t + b_q      k_t = (W_k x_t + b_k) / sqrt(d_k)      v_t = W_v x_t + b_v
    i~_t, f~_t = w_i x_t + b_i, w_f x_t + b_f          scalars per head
    o_t = sigmoid(W_o x_t + b_o)                       [H]
    log f_t = log sigmoid(f~_t)
    m_t = max(log f_t + m_{t-1}, i~_t)
    C_t = f'_t C_{t-1} + i'_t k_t v_t^T                matrix memory [d_k, d_v]
    n_t = f'_t n_{t-1} + i'_t k_t                      normaliser [d_k]
    h_t = o_t * concat_heads(C_t^T q_t / max(|n_t^T q_t|, exp(-m_t)))

with i', f' as for the sLSTM. The stabilised states are the paper's times exp(-m_t), so the
outputs equal those of the unstabilised equations (the bound ``max(|n^T q|, 1)`` becomes
``max(|n'^T q|, exp(-m))``). The paper allows a sigmoid or exponential forget gate; the sLSTM
offers both (``forget_gate``, default "sigmoid" as xLSTM's reference code), the mLSTM uses the
sigmoid as the reference code does. The surrounding xLSTM blocks (up-projections, causal
convolution, group norm) are not part of these cells.

Parameter layouts (H = hidden_size, K = num_heads, h_s = H / K, d_k = key_size or h_s)::

    sLSTM: w_ih [4H, D]  b_ih [4H]  rows (i, f, z, o)
           w_hh [4H, h_s]: rows of gate g, head j (g H + j h_s ...) multiply h_{t-1}'s head j
    mLSTM: w_ih [2 K d_k + 2H + 2K, D]  b_ih [same]  rows (q, k, v, i, f, o)

The sLSTM's biases come from the initializer; the mLSTM's forget-gate biases start at
linspace(3, 6) over the heads (xLSTM's reference initialisation). The carries are
``SLSTMState(h, c, n, m)`` (all [H]) and ``MLSTMState(h [H], c [K, d_k, d_v], n [K, d_k],
m [K])``; the output y is h_t. The mLSTM also has a chunkwise-parallel form
(:meth:`MLSTM.chunk_step`, run by :func:`jaxrnn.chunkwise_scan`).
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


class SLSTMState(NamedTuple):
    h: jax.Array  # [H]: output, fed back through w_hh
    c: jax.Array  # [H]: cell state (stabilised)
    n: jax.Array  # [H]: normaliser (stabilised)
    m: jax.Array  # [H]: stabiliser


class MLSTMState(NamedTuple):
    h: jax.Array  # [H]: last output
    c: jax.Array  # [K, d_k, d_v]: matrix memory (stabilised)
    n: jax.Array  # [K, d_k]: normaliser (stabilised)
    m: jax.Array  # [K]: stabiliser


def check_heads(where: str, hidden_size: Any, num_heads: Any) -> None:
    """Positive sizes, and ``num_heads`` dividing ``hidden_size``."""
    _checks.check_positive_int(where, "hidden_size", hidden_size)
    _checks.check_positive_int(where, "num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(
            f"{where}: num_heads={num_heads} must divide hidden_size={hidden_size}"
        )


def reject_h_mask(cell, h_mask) -> None:
    """Raises ValueError for an ``h_mask``: the cell's h does not enter its recurrence."""
    if h_mask is not None:
        raise ValueError(
            f"{type(cell).__name__}.recurrent_step: h_mask given, but the cell has no recurrent "
            "connection through h for variational dropout to mask"
        )


@dataclasses.dataclass(frozen=True)
class SLSTM:
    """sLSTM of xLSTM; see the module docstring for the equations and parameter layout.

    Attributes:
      hidden_size: H.
      num_heads: K, the number of diagonal blocks of the recurrent weights (K divides H).
      forget_gate: "sigmoid" or "exp".
      forget_bias: offset added to the forget gate's pre-activation.
      initializer: initialiser of w_ih, w_hh and b_ih (name or object).
      param_dtype: dtype of the parameters (float32).
    """

    hidden_size: int
    num_heads: int = 1
    forget_gate: str = "sigmoid"
    forget_bias: float = 0.0
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32

    num_gates = 4
    recurrent_mask_field = "h"

    def __post_init__(self):
        check_heads("SLSTM", self.hidden_size, self.num_heads)
        if self.forget_gate not in ("exp", "sigmoid"):
            raise ValueError(
                f"SLSTM: forget_gate={self.forget_gate!r}; expected 'exp' or 'sigmoid'"
            )

    input_size = base.input_size_method  # optional protocol method (cells.base)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        g = 4 * self.hidden_size
        return {"w_ih": ("input", (g, input_size)), "w_hh": ("recurrent", (g, self.head_size)),
                "b_ih": ("bias", (g,))}

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_positive_int("SLSTM.init", "input_size", input_size)
        return base.init_linear_params(
            resolve(self.initializer), key, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> SLSTMState:
        zeros = jnp.zeros((*batch_shape, self.hidden_size), params["w_ih"].dtype)
        return SLSTMState(h=zeros, c=zeros, n=zeros, m=zeros)

    def input_projection(self, params, x):
        return base.matmul(x, params["w_ih"], None) + params["b_ih"]

    def recurrent_step(self, params, carry: SLSTMState, xp, h_mask=None):
        k, s = self.num_heads, self.head_size
        h = carry.h if h_mask is None else carry.h * h_mask.astype(carry.h.dtype)
        w_hh = params["w_hh"].reshape(4, k, s, s)
        rec = jnp.einsum("gkij,kj->gki", w_hh, h.reshape(k, s)).reshape(4 * self.hidden_size)
        i_raw, f_raw, z_raw, o_raw = jnp.split(xp + rec, 4)
        f_raw = f_raw + self.forget_bias
        log_f = f_raw if self.forget_gate == "exp" else jax.nn.log_sigmoid(f_raw)
        # From an empty state (n = 0) any m is exact; m = i~ keeps i' = 1 (reference code).
        m = jnp.where(carry.n == 0, i_raw, jnp.maximum(log_f + carry.m, i_raw))
        i = jnp.exp(i_raw - m)
        f = jnp.exp(log_f + carry.m - m)
        c = f * carry.c + i * jnp.tanh(z_raw)
        n = f * carry.n + i
        h = jax.nn.sigmoid(o_raw) * c / n
        return SLSTMState(h=h, c=c, n=n, m=m), h

    def step(self, params, carry: SLSTMState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))


@dataclasses.dataclass(frozen=True)
class MLSTM:
    """mLSTM of xLSTM; see the module docstring for the equations and parameter layout.

    Attributes:
      hidden_size: H, the output size (num_heads values of size d_v = H / num_heads).
      num_heads: K.
      key_size: d_k, the query/key size per head (default d_v); the state has K d_k d_v
        entries.
      initializer: initialiser of w_ih and b_ih (name or object).
      param_dtype: dtype of the parameters (float32).
    """

    hidden_size: int
    num_heads: int = 1
    key_size: int | None = None
    initializer: Initializer | str = "pytorch"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_heads("MLSTM", self.hidden_size, self.num_heads)
        if self.key_size is not None:
            _checks.check_positive_int("MLSTM", "key_size", self.key_size)

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
        return (k * dk, k * dk, self.hidden_size, k, k, self.hidden_size)

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        rows = sum(self._sizes())
        return {"w_ih": ("input", (rows, input_size)), "b_ih": ("bias", (rows,))}

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        _checks.check_positive_int("MLSTM.init", "input_size", input_size)
        params = base.init_linear_params(
            resolve(self.initializer), key, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )
        start = sum(self._sizes()[:4])
        bias = jnp.linspace(3.0, 6.0, self.num_heads, dtype=self.param_dtype)
        return params | {"b_ih": params["b_ih"].at[start : start + self.num_heads].set(bias)}

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()) -> MLSTMState:
        k, dk, dv, dt = self.num_heads, self.key_dim, self.head_size, params["w_ih"].dtype
        return MLSTMState(
            h=jnp.zeros((*batch_shape, self.hidden_size), dt),
            c=jnp.zeros((*batch_shape, k, dk, dv), dt),
            n=jnp.zeros((*batch_shape, k, dk), dt),
            m=jnp.zeros((*batch_shape, k), dt),
        )

    def input_projection(self, params, x):
        return base.matmul(x, params["w_ih"], None) + params["b_ih"]

    def _heads(self, xp):
        """Splits xp [..., rows] into q, k [..., K, d_k], v [..., K, d_v], i~, log f [..., K]
        and o [..., H]."""
        k, dk, dv, lead = self.num_heads, self.key_dim, self.head_size, xp.shape[:-1]
        q, key, v, i_raw, f_raw, o = jnp.split(xp, np.cumsum(self._sizes())[:-1], axis=-1)
        return (q.reshape(*lead, k, dk), key.reshape(*lead, k, dk) / math.sqrt(dk),
                v.reshape(*lead, k, dv), i_raw, jax.nn.log_sigmoid(f_raw), jax.nn.sigmoid(o))

    def _readout(self, o, num, den, m):
        h = num / jnp.maximum(jnp.abs(den), jnp.exp(-m))[..., None]
        return o * h.reshape(*o.shape)

    def recurrent_step(self, params, carry: MLSTMState, xp, h_mask=None):
        reject_h_mask(self, h_mask)
        q, k, v, i_raw, log_f, o = self._heads(xp)
        m = jnp.maximum(log_f + carry.m, i_raw)
        i = jnp.exp(i_raw - m)
        f = jnp.exp(log_f + carry.m - m)
        c = f[:, None, None] * carry.c + i[:, None, None] * (k[:, :, None] * v[:, None, :])
        n = f[:, None] * carry.n + i[:, None] * k
        num = jnp.einsum("hkv,hk->hv", c, q)
        h = self._readout(o, num, jnp.einsum("hk,hk->h", n, q), m)
        return MLSTMState(h=h, c=c, n=n, m=m), h

    def step(self, params, carry: MLSTMState, x):
        base.check_step_input(self, params, x, carry)
        return self.recurrent_step(params, carry, self.input_projection(params, x))

    def chunk_step(
        self, params: Any, carry: MLSTMState, xs: jax.Array, *, starts: jax.Array,
        valid: jax.Array, initial_carry: MLSTMState,
    ) -> tuple[MLSTMState, jax.Array]:
        """C steps at once (the chunkwise-parallel form); equals C calls of :meth:`step`.

        Within the chunk, with F_t the cumulative log forget gate, the memory at t is
        ``exp(F_t - F_u + m_u) C_u + sum_s exp(F_t - F_s + i~_s) k_s v_s^T`` over the steps s
        <= t of t's segment (u its start state); m_t is the maximum of those exponents, exactly
        the recurrent stabiliser, so only differences <= 0 are exponentiated.

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
        xp = jax.vmap(self.input_projection, in_axes=(None, 0))(params, xs)
        q, k, v, i_raw, log_f, o = self._heads(xp)
        seg = chunked.segments(starts, valid)
        log_f = jnp.where(valid[:, None], log_f, 0.0)
        cum = jnp.cumsum(log_f, axis=0)
        before = cum - log_f
        base_w = cum - before[seg.start] + chunked.pick(seg.first, carry.m[None],
                                                        initial_carry.m[None])
        logits = cum[:, None, :] - cum[None, :, :] + i_raw[None, :, :]  # [t, s, K]
        same = seg.same[:, :, None]
        m = jnp.maximum(base_w, jnp.max(jnp.where(same, logits, -jnp.inf), axis=1))
        weights = chunked.masked_exp(same, logits - m[:, None, :])
        scores = weights * jnp.einsum("thk,shk->tsh", q, k)
        scale = jnp.exp(base_w - m)
        cq = chunked.pick(seg.first, jnp.einsum("thk,hkv->thv", q, carry.c),
                          jnp.einsum("thk,hkv->thv", q, initial_carry.c))
        nq = chunked.pick(seg.first, jnp.einsum("thk,hk->th", q, carry.n),
                          jnp.einsum("thk,hk->th", q, initial_carry.n))
        num = scale[..., None] * cq + jnp.einsum("tsh,shv->thv", scores, v)
        den = scale * nq + jnp.sum(scores, axis=1)
        hs = self._readout(o, num, den, m)

        last = weights[-1]  # the end state's weights on each step s
        first = seg.first[-1]
        c = scale[-1][:, None, None] * jnp.where(first, carry.c, initial_carry.c)
        c = c + jnp.einsum("sh,shk,shv->hkv", last, k, v)
        n = scale[-1][:, None] * jnp.where(first, carry.n, initial_carry.n)
        n = n + jnp.einsum("sh,shk->hk", last, k)
        h = chunked.last_valid(valid, hs, carry.h)
        return MLSTMState(h=h, c=c, n=n, m=m[-1]), chunked.zero_invalid(valid, hs)
