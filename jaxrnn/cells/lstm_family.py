"""The LSTM family of Greff et al. (2017), "LSTM: A Search Space Odyssey", as one configurable cell.

Greff et al.'s "vanilla" LSTM (peepholes: Gers & Schmidhuber, 2000), for one example, with
y = h the output fed back::

    z_t = g(W_z x_t + R_z y_{t-1} + b_z)                       block input
    i_t = sigma(W_i x_t + R_i y_{t-1} + p_i * c_{t-1} + b_i)   input gate
    f_t = sigma(W_f x_t + R_f y_{t-1} + p_f * c_{t-1} + b_f + forget_bias)
    c_t = z_t * i_t + c_{t-1} * f_t
    o_t = sigma(W_o x_t + R_o y_{t-1} + p_o * c_t + b_o)       peephole on the NEW cell state
    y_t = h(c_t) * o_t                                         g = h = tanh

Each field of :class:`LSTMFamily` switches one part, giving Greff et al.'s eight variants:

    NIG  input_gate=False            i_t = 1
    NFG  forget_gate=False           f_t = 1
    NOG  output_gate=False           o_t = 1
    NIAF input_activation=False      g(x) = x
    NOAF output_activation=False     h(x) = x
    CIFG coupled=True                f_t = 1 - i_t  (i_t = sigma(... - forget_bias), so a
                                     forget bias keeps its meaning: f_t = sigma(forget_bias - ...))
    NP   peepholes=False             no p_i, p_f, p_o
    FGR  full_gate_recurrence=True   + R_{*<-i} i_{t-1} + R_{*<-f} f_{t-1} + R_{*<-o} o_{t-1}
                                     in the pre-activation of every gate * in {i, f, o}
                                     (the 9 matrices of Greff et al., one [3H, 3H] block here)

and ``layer_norm=True`` gives the layer-normalised LSTM of Ba et al. (2016)::

    pre = LN(W_ih x_t) * g_x + b_ih + LN(W_hh y_{t-1}) * g_h + b_hh     (LN over all gate rows)
    y_t = o_t * tanh(LN(c_t) * g_c + beta_c)

(the shifts of the two first LNs are folded into b_ih and b_hh). With ``forget_gate=False`` the
forget bias has no effect.

Parameter layout: :class:`jaxrnn.LSTM`'s, with rows only for the gates present, in the order
(i, f, g, o) (``f`` absent with ``coupled=True`` or ``forget_gate=False``, ``i`` absent with
``input_gate=False``, ``o`` absent with ``output_gate=False``)::

    w_ih [G*H, D]  w_hh [G*H, R]  b_ih [G*H]  b_hh [G*H]  w_hr [P, H] (proj_size = P > 0)
    p_i, p_f, p_o [H]                        peepholes, for the sigmoid gates present
    w_gg [S*H, S*H]                          full_gate_recurrence; rows and columns (i, f, o)
    ln_x_gain, ln_h_gain [G*H], ln_c_gain, ln_c_bias [H]       layer_norm

with G the number of gate blocks and S the number of sigmoid gates present (i, f, o). The NP
configuration with every gate is exactly :class:`jaxrnn.LSTM` (same layout, same function).
The carry is ``LSTMState(h, c)``, or ``LSTMGateState(h, c, gates)`` with FGR, ``gates`` holding
(i, f, o)_{t-1}.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.cells.initializers import resolve
from jaxrnn.cells.lstm import LSTM, LSTMState


class LSTMGateState(NamedTuple):
    h: jax.Array  # [R]
    c: jax.Array  # [H]
    gates: jax.Array  # [S*H]: the sigmoid gates (i, f, o) present, at t-1 (FGR only)


def _layer_norm(x: jax.Array, eps: float) -> jax.Array:
    mean = jnp.mean(x)
    var = jnp.mean(jnp.square(x - mean))
    return (x - mean) * jax.lax.rsqrt(var + eps)


@dataclasses.dataclass(frozen=True)
class LSTMFamily(LSTM):
    """One member of Greff et al.'s LSTM family; the defaults are their vanilla LSTM.

    Attributes (besides :class:`jaxrnn.LSTM`'s):
      peepholes: peephole weights p_i, p_f, p_o (False: NP).
      input_gate, forget_gate, output_gate: keep the gate (False: NIG, NFG, NOG).
      input_activation, output_activation: tanh on the block input / cell output (False: NIAF,
        NOAF).
      coupled: f = 1 - i (CIFG).
      full_gate_recurrence: recurrent gate-to-gate weights (FGR).
      layer_norm: layer normalisation of Ba et al. (2016).
      ln_eps: epsilon of the layer normalisation.
    """

    peepholes: bool = True
    input_gate: bool = True
    forget_gate: bool = True
    output_gate: bool = True
    input_activation: bool = True
    output_activation: bool = True
    coupled: bool = False
    full_gate_recurrence: bool = False
    layer_norm: bool = False
    ln_eps: float = 1e-5

    def __post_init__(self):
        super().__post_init__()
        _checks.check_fields(
            type(self).__name__, self, positive_reals=("ln_eps",),
            bools=("peepholes", "input_gate", "forget_gate", "output_gate", "input_activation",
                   "output_activation", "coupled", "full_gate_recurrence", "layer_norm"),
        )
        if self.coupled and not (self.input_gate and self.forget_gate):
            raise ValueError(
                "LSTMFamily: coupled=True (CIFG, f = 1 - i) needs input_gate=True and "
                f"forget_gate=True; got input_gate={self.input_gate}, "
                f"forget_gate={self.forget_gate}"
            )

    @property
    def gate_rows(self) -> tuple[str, ...]:
        """Names of the row blocks of w_ih / w_hh, in order (a subset of i, f, g, o)."""
        present = {
            "i": self.input_gate,
            "f": self.forget_gate and not self.coupled,
            "g": True,
            "o": self.output_gate,
        }
        return tuple(name for name, keep in present.items() if keep)

    @property
    def sigmoid_gates(self) -> tuple[str, ...]:
        """The sigmoid gates with their own pre-activation (subset of i, f, o)."""
        return tuple(name for name in self.gate_rows if name != "g")

    @property
    def is_core_lstm(self) -> bool:
        """True for the NP configuration with every part: :class:`jaxrnn.LSTM` itself."""
        return not self.peepholes and self.gate_rows == ("i", "f", "g", "o") and (
            self.input_activation and self.output_activation and not self.layer_norm
            and not self.full_gate_recurrence)

    @property
    def num_gates(self) -> int:  # overrides LSTM's class attribute
        return len(self.gate_rows)

    def param_layout(self, input_size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
        layout = super().param_layout(input_size)
        h = self.hidden_size
        sig = self.sigmoid_gates
        if self.peepholes:
            layout |= {f"p_{name}": ("bias", (h,)) for name in sig}
        if self.full_gate_recurrence and sig:
            layout["w_gg"] = ("recurrent", (len(sig) * h, len(sig) * h))
        return layout

    def init(self, key: jax.Array, input_size: int) -> base.Params:
        where = f"{type(self).__name__}.init"
        _checks.check_key(where, key)
        _checks.check_positive_int(where, "input_size", input_size)
        _checks.check_positive_int(where, "hidden_size", self.hidden_size)
        params = base.init_linear_params(
            resolve(self.initializer), key, self.param_layout(input_size), self.hidden_size,
            self.param_dtype,
        )
        if self.layer_norm:
            g, h = self.num_gates * self.hidden_size, self.hidden_size
            params |= {
                "ln_x_gain": jnp.ones((g,), self.param_dtype),
                "ln_h_gain": jnp.ones((g,), self.param_dtype),
                "ln_c_gain": jnp.ones((h,), self.param_dtype),
                "ln_c_bias": jnp.zeros((h,), self.param_dtype),
            }
        return params

    def initial_carry(self, params, batch_shape: tuple[int, ...] = ()):
        carry = super().initial_carry(params, batch_shape)
        if not self.full_gate_recurrence:
            return carry
        s = len(self.sigmoid_gates) * self.hidden_size
        return LSTMGateState(carry.h, carry.c, jnp.zeros((*batch_shape, s), carry.c.dtype))

    def input_projection(self, params, x):
        xp = base.matmul(x, params["w_ih"], self.compute_dtype)
        if self.layer_norm:
            xp = _layer_norm(xp, self.ln_eps) * params["ln_x_gain"]
        return xp + params["b_ih"] if self.use_bias else xp

    def recurrent_step(self, params, carry, xp, h_mask=None):
        h_prev = carry.h if h_mask is None else carry.h * h_mask
        rec = base.matmul(h_prev, params["w_hh"], self.compute_dtype)
        if self.layer_norm:
            rec = _layer_norm(rec, self.ln_eps) * params["ln_h_gain"]
        z = xp + rec
        if self.use_bias:
            z = z + params["b_hh"]
        if self.is_core_lstm:  # exactly jaxrnn.LSTM's function, through its gate_update hook
            c, h = self.gate_update(z, carry.c)
            if self.proj_size:
                h = base.matmul(h, params["w_hr"], self.compute_dtype)
            h = h.astype(carry.h.dtype)
            return LSTMState(h=h, c=c), h
        pre = dict(zip(self.gate_rows, jnp.split(z, self.num_gates), strict=True))
        sig = self.sigmoid_gates
        if self.full_gate_recurrence and sig:
            fb = base.matmul(carry.gates, params["w_gg"], self.compute_dtype)
            pre |= {n: pre[n] + part for n, part in zip(sig, jnp.split(fb, len(sig)), strict=True)}

        c_prev = carry.c
        one = jnp.ones_like(c_prev)
        peep = self.peepholes
        block = jnp.tanh(pre["g"]) if self.input_activation else pre["g"]
        gates = {}
        if self.input_gate:
            zi = pre["i"] + params["p_i"] * c_prev if peep else pre["i"]
            gates["i"] = jax.nn.sigmoid(zi - self.forget_bias if self.coupled else zi)
        i = gates.get("i", one)
        if self.coupled:
            f = 1.0 - i
        elif self.forget_gate:
            zf = pre["f"] + params["p_f"] * c_prev if peep else pre["f"]
            f = gates["f"] = jax.nn.sigmoid(zf + self.forget_bias)
        else:
            f = one
        c = (f * c_prev + i * block).astype(c_prev.dtype)
        if self.output_gate:
            zo = pre["o"] + params["p_o"] * c if peep else pre["o"]
            gates["o"] = jax.nn.sigmoid(zo)
        o = gates.get("o", one)
        c_out = c
        if self.layer_norm:
            c_out = _layer_norm(c, self.ln_eps) * params["ln_c_gain"] + params["ln_c_bias"]
        h = o * (jnp.tanh(c_out) if self.output_activation else c_out)
        if self.proj_size:
            h = base.matmul(h, params["w_hr"], self.compute_dtype)
        h = h.astype(carry.h.dtype)
        if self.full_gate_recurrence:
            prev = jnp.concatenate([gates[n] for n in sig]) if sig else carry.gates
            return LSTMGateState(h=h, c=c, gates=prev.astype(carry.gates.dtype)), h
        return LSTMState(h=h, c=c), h
