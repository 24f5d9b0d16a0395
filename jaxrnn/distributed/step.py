"""The data-parallel train step: :func:`jaxrnn.train.make_train_step` jitted over a mesh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import AbstractMesh, Mesh, NamedSharding

from jaxrnn.distributed.mesh import batch_sharding, replicated
from jaxrnn.distributed.placement import _check_divisible, _place, put_batch, state_shardings
from jaxrnn.train.state import TrainState
from jaxrnn.train.step import LossFn, Metrics
from jaxrnn.train.step import make_train_step as _make_train_step

PyTree = Any


class ShardedTrainStep:
    """:func:`jaxrnn.train.make_train_step`'s step, jitted data-parallel over a mesh.

    Call it as ``train_step(state, batch) -> (new_state, metrics)``: arrays not yet where they
    belong are placed first. :meth:`jitted` gives the ``jax.jit`` function itself, with its
    ``in_shardings`` and ``out_shardings``, for lowering or ``jax.export`` on a mesh without
    devices (a :class:`jax.sharding.AbstractMesh`)::

        mesh = jax.sharding.AbstractMesh((4,), ("batch",))
        step = distributed.make_train_step(loss_fn, optimizer, mesh)
        exported = jax.export.export(step.jitted(state), platforms=("cuda",))(state, batch)
    """

    def __init__(self, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                 mesh: Mesh | AbstractMesh, *, donate: bool = True):
        self.mesh = mesh
        self.donate = donate
        self._step = _make_train_step(loss_fn, optimizer, jit=False)
        self._rep, self._split = replicated(mesh), batch_sharding(mesh)
        self._compiled: dict[Any, tuple[list[NamedSharding], Callable]] = {}

    def jitted(self, state: TrainState) -> Callable[..., tuple[TrainState, Metrics]]:
        """The ``jax.jit`` step for states of ``state``'s structure (arrays or
        ``jax.ShapeDtypeStruct`` leaves): state sharded by :func:`state_shardings`, batch by
        :func:`batch_sharding`, metrics replicated, the input state donated if ``donate``."""
        return self._entry(state)[1]

    def _entry(self, state: TrainState, leaves=None, treedef=None):
        if not isinstance(state, TrainState):
            raise TypeError(f"train_step: state must be a jaxrnn.train.TrainState; got "
                            f"{type(state).__name__}")
        if leaves is None:
            leaves, treedef = jax.tree.flatten(state)
        signature = (treedef, tuple(np.ndim(x) for x in leaves))
        if signature not in self._compiled:
            shardings = state_shardings(state, self.mesh)
            self._compiled[signature] = (jax.tree.leaves(shardings), jax.jit(
                self._step, in_shardings=(shardings, self._split),
                out_shardings=(shardings, self._rep),
                donate_argnums=(0,) if self.donate else ()))
        return self._compiled[signature]

    def __call__(self, state: TrainState, batch: PyTree) -> tuple[TrainState, Metrics]:
        if not isinstance(self.mesh, Mesh):
            raise TypeError("train_step: an AbstractMesh has no devices to run on; use "
                            ".jitted(state) to lower or export, or a Mesh from make_mesh to run")
        leaves, treedef = jax.tree.flatten(state)
        shardings, fn = self._entry(state, leaves, treedef)
        if not all(isinstance(x, jax.Array) and x.sharding == s
                   for x, s in zip(leaves, shardings, strict=True)):
            _check_divisible(state.carry, self.mesh.size, "train_step: state.carry")
            state = treedef.unflatten(
                [_place(x, s) for x, s in zip(leaves, shardings, strict=True)])
        # XLA:CPU's in-process all-reduce can deadlock when several multi-device programs are
        # queued (jax 0.10.2, PTB-sized steps on 4 host devices of a 2-core machine): there,
        # each step waits for the previous one. It costs only the Python dispatch overlap.
        if self.mesh.devices.flat[0].platform == "cpu" and len(self.mesh.local_devices) > 1:
            jax.block_until_ready(state)
        return fn(state, put_batch(batch, self.mesh))


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh | AbstractMesh,
    *,
    donate: bool = True,
) -> ShardedTrainStep:
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
        mesh: from :func:`make_mesh`; or a :class:`jax.sharding.AbstractMesh` of one axis, to
            lower or export the step (:meth:`ShardedTrainStep.jitted`) without devices.
        donate: donate the input state's buffers.

    Returns:
        A :class:`ShardedTrainStep`: ``train_step(state, batch) -> (new_state, metrics)``,
        the state on ``mesh``.
    """
    return ShardedTrainStep(loss_fn, optimizer, mesh, donate=donate)
