"""The data-parallel train step: :func:`jaxrnn.train.make_train_step` jitted over a mesh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from jaxrnn.distributed.mesh import batch_sharding, replicated
from jaxrnn.distributed.placement import _check_divisible, _place, put_batch, state_shardings
from jaxrnn.train.state import TrainState
from jaxrnn.train.step import LossFn, Metrics
from jaxrnn.train.step import make_train_step as _make_train_step

PyTree = Any


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    donate: bool = True,
) -> Callable[[TrainState, PyTree], tuple[TrainState, Metrics]]:
    """:func:`jaxrnn.train.make_train_step`'s step, jitted data-parallel over ``mesh``.

    The same step code as on one device; ``jax.jit`` gets ``in_shardings`` and
    ``out_shardings`` (:func:`state_shardings` for the state, :func:`batch_sharding` for the
    batch, replicated metrics) and XLA partitions it: each device computes its rows' part
    of the loss, the gradients are all-reduced, every device applies the same update. A
    ``loss_fn`` written for the global batch (means over the batch axis, or sums divided by
    the global size) needs no change.

    Arrays not yet where they belong (a fresh state, a numpy batch, a zero carry made at
    an epoch start) are placed on each call; pass the GLOBAL batch (or
    ``put_batch(rows, mesh, process_local=True)``'s result). On CPU with several local
    devices, each call first waits for the previous step's state (an XLA:CPU collective
    deadlock otherwise shows up when steps queue up).

    Args:
        loss_fn: ``loss_fn(params, carry, batch, key) -> (loss, (new_carry, metrics))``.
        optimizer: an optax transformation.
        mesh: from :func:`make_mesh`.
        donate: donate the input state's buffers.

    Returns:
        ``train_step(state, batch) -> (new_state, metrics)``, the state on ``mesh``.
    """
    step = _make_train_step(loss_fn, optimizer, jit=False)
    compiled: dict[Any, tuple[list[NamedSharding], Callable]] = {}
    rep, split = replicated(mesh), batch_sharding(mesh)
    # XLA:CPU's in-process all-reduce can deadlock when several multi-device programs are
    # queued (seen with jax 0.10.2, PTB-sized steps on 4 host devices of a 2-core machine):
    # there, each step waits for the previous one. It costs only the Python dispatch overlap.
    serialize = mesh.devices.flat[0].platform == "cpu" and len(mesh.local_devices) > 1

    def train_step(state: TrainState, batch: PyTree) -> tuple[TrainState, Metrics]:
        leaves, treedef = jax.tree.flatten(state)
        signature = (treedef, tuple(np.ndim(x) for x in leaves))
        if signature not in compiled:
            if not isinstance(state, TrainState):
                raise TypeError(f"train_step: state must be a jaxrnn.train.TrainState; got "
                                f"{type(state).__name__}")
            shardings = state_shardings(state, mesh)
            compiled[signature] = (jax.tree.leaves(shardings), jax.jit(
                step, in_shardings=(shardings, split), out_shardings=(shardings, rep),
                donate_argnums=(0,) if donate else ()))
        shardings, fn = compiled[signature]
        if not all(isinstance(x, jax.Array) and x.sharding == s
                   for x, s in zip(leaves, shardings, strict=True)):
            _check_divisible(state.carry, mesh.size, "train_step: state.carry")
            state = treedef.unflatten(
                [_place(x, s) for x, s in zip(leaves, shardings, strict=True)])
        if serialize:
            jax.block_until_ready(state)
        return fn(state, put_batch(batch, mesh))

    return train_step
