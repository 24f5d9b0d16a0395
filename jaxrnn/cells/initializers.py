"""Parameter initialisers, selectable per cell.

Each initialiser is a frozen (hashable) dataclass, so a cell that holds one stays usable as a
static argument to ``jax.jit``. It is called once per parameter with the parameter's *role*:

- ``"input"``: input-to-hidden weights ``w_ih``      [gates * H, D]
- ``"recurrent"``: hidden-to-hidden weights ``w_hh`` [gates * H, H_in]
- ``"bias"``: ``b_ih``, ``b_hh`` and other vectors
- ``"projection"``: the LSTM output projection ``w_hr`` [P, H]

Choices:

- :class:`PyTorchUniform` — U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as ``torch.nn.LSTM``.
- :class:`Uniform` — U(-scale, scale) for every parameter, biases included, as the code of
  Zaremba et al. (2014) (small 0.1, medium 0.05, large 0.04).
- :class:`Orthogonal` — orthogonal recurrent weights, one orthogonal block per gate
  (Saxe et al., 2014), Glorot-uniform input weights, zero biases.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Protocol

import jax
import jax.numpy as jnp

from jaxrnn import _checks

Role = Literal["input", "recurrent", "bias", "projection"]


class Initializer(Protocol):
    def __call__(
        self, key: jax.Array, role: Role, shape: tuple[int, ...], hidden_size: int, dtype
    ) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class PyTorchUniform:
    """U(-1/sqrt(H), 1/sqrt(H)) for every parameter (PyTorch's RNN/LSTM/GRU default)."""

    def __call__(self, key, role, shape, hidden_size, dtype):
        bound = 1.0 / math.sqrt(hidden_size)
        return jax.random.uniform(key, shape, dtype, -bound, bound)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """U(-scale, scale) for every parameter, biases included (Zaremba et al., 2014)."""

    scale: float = 0.1

    def __post_init__(self):
        _checks.check_real("Uniform", "scale", self.scale, positive=True)

    def __call__(self, key, role, shape, hidden_size, dtype):
        return jax.random.uniform(key, shape, dtype, -self.scale, self.scale)


@dataclasses.dataclass(frozen=True)
class Orthogonal:
    """Orthogonal recurrent blocks (one per gate), Glorot-uniform inputs, zero biases."""

    gain: float = 1.0

    def __post_init__(self):
        _checks.check_real("Orthogonal", "gain", self.gain, positive=True)

    def __call__(self, key, role, shape, hidden_size, dtype):
        if role == "bias":
            return jnp.zeros(shape, dtype)
        if role == "recurrent":
            rows, cols = shape
            blocks = rows // hidden_size
            keys = jax.random.split(key, blocks)
            ortho = jax.nn.initializers.orthogonal(scale=self.gain)
            return jnp.concatenate([ortho(k, (hidden_size, cols), dtype) for k in keys], axis=0)
        return jax.nn.initializers.glorot_uniform()(key, shape, dtype)


def resolve(init: Initializer | str | None) -> Initializer:
    """Accepts an initialiser object or one of the names "pytorch", "orthogonal"."""
    if init is None or init == "pytorch":
        return PyTorchUniform()
    if init == "orthogonal":
        return Orthogonal()
    if isinstance(init, str):
        raise ValueError(
            f"init={init!r} is not known; expected 'pytorch', 'orthogonal', "
            "or an initialiser object such as jaxrnn.Uniform(0.1)"
        )
    return init
