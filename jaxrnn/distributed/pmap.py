"""The ``jax.pmap`` compatibility path: arrays with a leading device axis, explicit ``pmean``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxrnn.distributed.placement import _check_divisible
from jaxrnn.train.state import TrainState
from jaxrnn.train.step import LossFn, Metrics
from jaxrnn.train.step import make_train_step as _make_train_step

PyTree = Any
PMAP_AXIS = "devices"
"""The ``jax.pmap`` axis name of :func:`make_pmap_train_step`."""


def pmap_state(state: TrainState, num_devices: int | None = None, *,
               axis_name: str = PMAP_AXIS) -> TrainState:
    """``state`` with a leading device axis for :func:`make_pmap_train_step`.

    Step, params, opt_state and key are repeated ``num_devices`` times; each carry leaf
    ``[B, ...]`` becomes ``[num_devices, B / num_devices, ...]`` (device ``i`` holds rows
    ``i*B/n .. (i+1)*B/n``, as the sharding path does). The arrays are placed the way
    ``jax.pmap`` returns its outputs, so the second step does not recompile.

    Args:
        state: a :class:`jaxrnn.train.TrainState` (batch-major carry).
        num_devices: default ``jax.local_device_count()``.
        axis_name: the step's ``axis_name``.
    """
    if not isinstance(state, TrainState):
        raise TypeError(f"pmap_state: state must be a TrainState; got {type(state).__name__}")
    n = jax.local_device_count() if num_devices is None else num_devices
    _check_divisible(state.carry, n, "pmap_state: state.carry")

    def repeat(x: Any) -> np.ndarray:
        x = np.asarray(x)
        return np.broadcast_to(x, (n, *x.shape))

    fixed = jax.tree.map(repeat, state._replace(carry=None))
    state = fixed._replace(carry=jax.tree.map(
        lambda x: _split(x, n) if np.ndim(x) >= 1 else repeat(x), state.carry))
    return jax.device_put(state, _pmap_sharding(n, axis_name))


def pmap_batch(batch: PyTree, num_devices: int | None = None, *,
               axis_name: str = PMAP_AXIS) -> PyTree:
    """Each leaf ``[B, ...]`` of the global batch as ``[num_devices, B / num_devices, ...]``,
    device ``i`` holding slice ``i``."""
    n = jax.local_device_count() if num_devices is None else num_devices
    _check_divisible(batch, n, "pmap_batch: batch")
    return jax.device_put(jax.tree.map(lambda x: _split(np.asarray(x), n), batch),
                          _pmap_sharding(n, axis_name))


def unpmap_state(state: TrainState) -> TrainState:
    """The inverse of :func:`pmap_state`: device 0's copy of the replicated fields, the carry
    rows of all devices concatenated back to ``[B, ...]``."""
    fixed = jax.tree.map(lambda x: x[0], state._replace(carry=None))
    carry = jax.tree.map(
        lambda x: x[0] if np.ndim(x) == 1 else x.reshape(-1, *x.shape[2:]), state.carry)
    return fixed._replace(carry=carry)


def _pmap_sharding(n: int, axis_name: str) -> NamedSharding:
    """How ``jax.pmap`` (built on ``shard_map``) lays out its inputs and outputs."""
    if not 1 <= n <= jax.local_device_count():
        raise ValueError(
            f"jaxrnn.distributed: num_devices is {n}; expected 1 .. "
            f"{jax.local_device_count()} (the local devices)"
        )
    mesh = Mesh(np.asarray(jax.local_devices()[:n]), (axis_name,), axis_types=(AxisType.Auto,))
    return NamedSharding(mesh, PartitionSpec(axis_name))


def _split(x: Any, n: int) -> Any:
    shape = np.shape(x)
    return x.reshape(n, shape[0] // n, *shape[1:])


def make_pmap_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    axis_name: str = PMAP_AXIS,
    devices: Sequence[jax.Device] | None = None,
    donate: bool = True,
) -> Callable[[TrainState, PyTree], tuple[TrainState, Metrics]]:
    """The compatibility path: the same step under ``jax.pmap``, gradients ``lax.pmean``-ed.

    ``jax.pmap`` is in maintenance mode; prefer :func:`make_train_step`. Inside, each device
    runs :func:`jaxrnn.train.make_train_step`'s step on its rows, with the parameters wrapped
    in an identity whose gradient is ``lax.pmean(g, axis_name)``: every device sees the
    mean gradient, clips and updates identically, and its parameters stay equal to the
    others'. Metrics are ``lax.pmean``-ed too. This equals the global-batch step when
    ``loss_fn`` (and every metric) is a mean over the examples; device ``i`` folds ``i``
    into the step's key so dropout differs between devices.

    Args:
        loss_fn: ``loss_fn(params, carry, batch, key) -> (loss, (new_carry, metrics))``,
            a mean over the examples it is given.
        optimizer: an optax transformation.
        axis_name: the pmapped axis name.
        devices: default: all local devices.
        donate: donate the input state's buffers.

    Returns:
        ``train_step(state, batch) -> (new_state, metrics)`` on :func:`pmap_state` /
        :func:`pmap_batch` arrays; metrics keep the device axis (all equal).
    """

    @jax.custom_vjp
    def mean_gradient(params: PyTree) -> PyTree:
        return params

    def forward(params: PyTree) -> tuple[PyTree, None]:
        return params, None

    def backward(_: None, grads: PyTree) -> tuple[PyTree]:
        return (lax.pmean(grads, axis_name),)

    mean_gradient.defvjp(forward, backward)

    def device_loss(params, carry, batch, key):
        key = jax.random.fold_in(key, lax.axis_index(axis_name))
        return loss_fn(mean_gradient(params), carry, batch, key)

    step = _make_train_step(device_loss, optimizer, jit=False)

    def device_step(state: TrainState, batch: PyTree) -> tuple[TrainState, Metrics]:
        state, metrics = step(state, batch)
        return state, lax.pmean(metrics, axis_name)

    mapped = jax.pmap(device_step, axis_name, devices=devices,
                      donate_argnums=(0,) if donate else ())
    n = len(devices) if devices is not None else jax.local_device_count()

    def train_step(state: TrainState, batch: PyTree) -> tuple[TrainState, Metrics]:
        for what, tree in (("batch", batch), ("state", state)):
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
                if np.ndim(leaf) == 0 or np.shape(leaf)[0] != n:
                    raise ValueError(
                        f"pmap train_step: {what}{jax.tree_util.keystr(path)} has shape "
                        f"{np.shape(leaf)}; expected a leading device axis of size {n} "
                        f"(use pmap_{what}(..., {n}))"
                    )
        return mapped(state, batch)

    return train_step
