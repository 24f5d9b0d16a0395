"""Where a train state and a batch live on a mesh: shardings, placement and copies back."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from jaxrnn.distributed.mesh import batch_sharding, replicated
from jaxrnn.train.state import TrainState

PyTree = Any


def state_shardings(state: TrainState, mesh: Mesh) -> TrainState:
    """Where each leaf of ``state`` lives: the carry's leaves split along axis 0 (the batch),
    everything else (step, params, opt_state, key, scalar carry leaves) replicated.

    Args:
        state: a :class:`jaxrnn.train.TrainState`; its carry leaves must be batch-major
            (``[batch, ...]``), as :meth:`jaxrnn.StackedRNN.initial_state`'s are.
        mesh: from :func:`make_mesh`.

    Returns:
        A ``TrainState`` of :class:`jax.sharding.NamedSharding` leaves, same structure.
    """
    if not isinstance(state, TrainState):
        raise TypeError(
            f"state_shardings: state must be a jaxrnn.train.TrainState; got "
            f"{type(state).__name__}"
        )
    rep, split = replicated(mesh), batch_sharding(mesh)
    fixed = jax.tree.map(lambda _: rep, state._replace(carry=None))
    carry = jax.tree.map(lambda x: split if np.ndim(x) >= 1 else rep, state.carry)
    return fixed._replace(carry=carry)


def abstract_state(state: TrainState, mesh: Mesh) -> TrainState:
    """``state`` as ``jax.ShapeDtypeStruct`` leaves carrying :func:`state_shardings`.

    Pass it as ``like`` to :meth:`jaxrnn.train.Checkpointer.restore` to read a checkpoint
    saved on any device count straight onto ``mesh``.
    """
    shardings = state_shardings(state, mesh)
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s), state, shardings
    )


def _place(x: Any, sharding: NamedSharding, *, rows_only: bool = False) -> jax.Array:
    """``x`` as a global array with ``sharding``. ``rows_only``: ``x`` holds just this
    process's rows (the global shape is inferred); otherwise the whole value."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)  # one process, or already global: reshard
    host = np.asarray(x)
    return jax.make_array_from_process_local_data(
        sharding, host, None if rows_only else host.shape
    )


def _check_divisible(tree: PyTree, n: int, where: str) -> None:
    """Raises unless every non-scalar leaf's axis 0 (the batch) is divisible by ``n``."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        shape = np.shape(leaf)
        if len(shape) >= 1 and shape[0] % n:
            raise ValueError(
                f"{where}{jax.tree_util.keystr(path)} has shape {shape}: its batch axis 0 "
                f"({shape[0]}) is not divisible by the {n} devices it is split across; use a "
                f"batch size that is a multiple of {n}, or fewer devices (--devices)"
            )


def put_state(state: TrainState, mesh: Mesh) -> TrainState:
    """Places ``state`` on ``mesh`` per :func:`state_shardings` (a no-op where it already is).

    With several processes every process must pass the same values (e.g. the same seed).
    """
    _check_divisible(state.carry, mesh.size, "put_state: state.carry")
    return jax.tree.map(_place, state, state_shardings(state, mesh))


def put_batch(batch: PyTree, mesh: Mesh, *, process_local: bool = False) -> PyTree:
    """Splits ``batch``'s leaves along axis 0 across ``mesh`` (a global ``jax.Array`` each).

    Args:
        batch: a pytree of arrays with the batch on axis 0.
        mesh: from :func:`make_mesh`.
        process_local: ``False``: ``batch`` is the whole global batch (every process passes
            the same; each copies only its rows). ``True``: ``batch`` holds only this
            process's rows, ``batch[process_rows(batch_size, mesh)]``; the global batch is
            their concatenation over the processes.

    Returns:
        The global batch as arrays sharded by :func:`batch_sharding`.
    """
    split = batch_sharding(mesh)
    n = len(mesh.local_devices) if process_local else mesh.size
    _check_divisible(batch, n, "put_batch: batch")
    for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
        if np.ndim(leaf) == 0:
            raise ValueError(
                f"put_batch: batch{jax.tree_util.keystr(path)} is a scalar; expected arrays "
                "with the batch on axis 0"
            )
    return jax.tree.map(lambda x: _place(x, split, rows_only=process_local), batch)


def local_copy(tree: PyTree) -> PyTree:
    """Each array of ``tree`` on one local device: the whole value, no collective.

    For work every process does on its own, such as a batch-1 evaluation with replicated
    parameters (running it on the whole mesh would repeat it on every device).

    Raises:
        ValueError: for an array split across processes (only replicated ones qualify).
    """
    device = jax.local_devices()[0]

    def one(x: Any) -> Any:
        if not isinstance(x, jax.Array):
            return x
        if x.is_fully_replicated:
            return x.addressable_data(0)
        if x.is_fully_addressable:
            return jax.device_put(x, device)
        raise ValueError(
            f"local_copy: an array of shape {x.shape} is split across processes "
            f"({x.sharding}); expected a replicated array"
        )

    return jax.tree.map(one, tree)
