"""The training state: everything a checkpoint must hold to continue a run bitwise."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["TrainState"]

PyTree = Any


class TrainState(NamedTuple):
    """Parameters, optimizer state, step counter, PRNG key and recurrent carry.

    A plain pytree of arrays (``None`` or empty containers allowed in ``carry``), so it can
    be jitted, donated and checkpointed as is.

    Attributes:
        step: int32 scalar array, the number of optimizer updates applied so far. The
            training loop derives the data position ``(epoch, index)`` from it.
        params: the model parameters, any pytree of arrays.
        opt_state: ``optimizer.init(params)``.
        key: a raw ``uint32[2]`` key from ``jax.random.PRNGKey`` (not a typed
            ``jax.random.key``, so checkpoints hold plain arrays). It never changes; step
            ``s`` uses ``jax.random.fold_in(key, s)``.
        carry: state carried from one batch to the next, e.g. the LSTM hidden state
            across truncated-BPTT windows; ``None`` when there is none. It must keep the
            same structure, shapes and dtypes from step to step.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    key: jax.Array
    carry: PyTree = None

    @classmethod
    def create(
        cls,
        params: PyTree,
        optimizer: optax.GradientTransformation,
        *,
        seed: int | None = None,
        key: jax.Array | None = None,
        carry: PyTree = None,
    ) -> TrainState:
        """A fresh state at step 0.

        Args:
            params: initial parameters.
            optimizer: the optax transformation; its ``init(params)`` gives ``opt_state``.
            seed: builds ``key = jax.random.PRNGKey(seed)``; give exactly one of ``seed``
                and ``key``.
            key: a raw ``uint32[2]`` key.
            carry: the initial carry (or ``None``).

        Returns:
            ``TrainState(step=int32(0), params, optimizer.init(params), key, carry)``.

        Raises:
            ValueError: if both or neither of ``seed``/``key`` is given, or ``key`` is a
                typed key or has the wrong shape/dtype.
        """
        if (seed is None) == (key is None):
            raise ValueError(
                f"TrainState.create: give exactly one of seed and key; got seed={seed!r}, "
                f"key={'None' if key is None else 'an array'}"
            )
        key = jax.random.PRNGKey(seed) if key is None else check_raw_key(key, "key")
        return cls(
            step=jnp.zeros((), dtype=jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            key=key,
            carry=carry,
        )


def check_raw_key(key: Any, name: str) -> jax.Array:
    """Returns ``key`` as a raw ``uint32[2]`` array or raises a ValueError naming ``name``."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        raise ValueError(
            f"{name} is a typed PRNG key ({key.dtype}); expected a raw uint32[2] key from "
            "jax.random.PRNGKey(seed) (or jax.random.key_data(key)) so checkpoints hold "
            "plain arrays"
        )
    shape, dtype = np.shape(key), getattr(key, "dtype", None)
    if shape != (2,) or dtype != np.uint32:
        raise ValueError(
            f"{name} has shape {shape} and dtype {dtype}; expected a raw key of shape (2,) "
            "and dtype uint32 from jax.random.PRNGKey(seed)"
        )
    return jnp.asarray(key)
