"""Cells written the way jaxrnn.Cell's docstring tells a user to: only init, initial_carry and step.

Importable as ``user_cells`` with ``PYTHONPATH=tests`` (``--variants user_cells:TanhRNN``).
"""

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

import jaxrnn


@dataclasses.dataclass(frozen=True)
class TanhRNN:
    """A user's Elman cell: params {"W", "U"}, a dict carry, none of the optional methods."""

    hidden_size: int

    def init(self, key, input_size):
        k_w, k_u = jax.random.split(key)
        return {
            "W": jax.random.normal(k_w, (self.hidden_size, input_size)) / math.sqrt(input_size),
            "U": jax.random.normal(k_u, (self.hidden_size, self.hidden_size))
            / math.sqrt(self.hidden_size),
        }

    def initial_carry(self, params, batch_shape=()):
        return {"state": jnp.zeros((*batch_shape, self.hidden_size), params["W"].dtype)}

    def step(self, params, carry, x):
        state = jnp.tanh(params["W"] @ x + params["U"] @ carry["state"])
        return {"state": state}, state


class Memory(NamedTuple):
    slow: jax.Array
    fast: jax.Array


@dataclasses.dataclass(frozen=True)
class TwoTimescale:
    """A leaky two-timescale cell: a NamedTuple carry without ``h``, output [2H], a declared
    recurrent-mask field (``fast``) and no split into input projection and recurrence."""

    hidden_size: int
    leak: float = 0.9
    recurrent_mask_field = "fast"

    def init(self, key, input_size):
        k_in, k_rec = jax.random.split(key)
        h = self.hidden_size
        return {
            "inp": jax.random.normal(k_in, (2 * h, input_size)) / math.sqrt(input_size),
            "rec": jax.random.normal(k_rec, (h, h)) / math.sqrt(h),
            "bias": jnp.zeros((2 * h,)),
        }

    def initial_carry(self, params, batch_shape=()):
        zeros = jnp.zeros((*batch_shape, self.hidden_size), params["rec"].dtype)
        return Memory(slow=zeros, fast=zeros)

    def step(self, params, carry, x):
        z = params["inp"] @ x + params["bias"]
        gate, drive = jnp.split(z, 2)
        fast = jnp.tanh(drive + params["rec"] @ carry.fast)
        slow = self.leak * carry.slow + (1.0 - self.leak) * jax.nn.sigmoid(gate) * fast
        return Memory(slow=slow, fast=fast), jnp.concatenate([fast, slow])


def _fn_init(key, input_size):
    return {"a": jax.random.normal(key, (4, input_size)) * 0.5}


def _fn_step(params, h, x):
    h = jnp.tanh(params["a"] @ x) + 0.5 * h
    return h, h


FUNCTIONAL = jaxrnn.cell_from_functions(
    _fn_init, _fn_step, lambda params, batch_shape=(): jnp.zeros((*batch_shape, 4)),
    name="Functional",
)
"""A cell from three plain functions; its carry is a bare array and its size is fixed (4)."""


def functional(hidden_size):
    """A factory ``(hidden_size) -> cell`` for ``variants.register`` (hidden_size is ignored)."""
    del hidden_size
    return FUNCTIONAL
