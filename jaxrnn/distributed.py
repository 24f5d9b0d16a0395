"""Data parallelism across devices and hosts: a sharded batch, replicated parameters.

The recommended path is ``jax.jit`` over a one-axis :class:`jax.sharding.Mesh` (GSPMD): the
batch (and the recurrent carry, which is per example) is split along the mesh axis, parameters,
optimizer state, step and key are replicated, and XLA inserts the gradient all-reduce. The step
function is :func:`jaxrnn.train.make_train_step`'s, unchanged; only where the arrays live
differs::

    mesh = distributed.make_mesh()                          # every visible device
    distributed.check_batch_size(batch_size, mesh)          # clear error if it does not divide
    state = distributed.put_state(state, mesh)              # optional: the step places it too
    train_step = distributed.make_train_step(loss_fn, optimizer, mesh)
    state, metrics = train_step(state, batch)               # batch: the GLOBAL batch (numpy)

The global batch, and so the result, does not depend on the number of devices: the per-device
batch is ``batch_size / num_devices``. Losses agree with a one-device run to float32 rounding
(the reductions are ordered differently). Randomness agrees too: with
``jax_threefry_partitionable`` (the default) a sharded ``jax.random`` draw equals the unsharded
one, so dropout masks do not depend on the device count.

``jax.pmap`` is in maintenance mode (implemented on top of ``jax.shard_map``); it remains here
as a thin compatibility path, :func:`make_pmap_train_step`, with explicit ``lax.pmean`` of the
gradients over a named axis and arrays carrying a leading device axis (:func:`pmap_state`,
:func:`pmap_batch`, :func:`unpmap_state`). It equals the sharding path when ``loss_fn`` is a
mean over the examples (a mean of per-device means is the global mean) and draws no random
numbers; with dropout, device ``i`` folds ``i`` into the step key, so its masks differ from the
sharding path's.

Several hosts (multi-controller JAX): every process runs the same script, calls
:func:`initialize` before any other JAX call (``--coordinator-address``, ``--num-processes``,
``--process-id`` from :func:`add_arguments`, or the environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), and builds the same
mesh over all processes' devices. Each process feeds its own rows of the global batch:
either the whole global batch (``put_batch(global_batch, mesh)``; each process copies only its
rows to its devices) or just its rows (``put_batch(rows, mesh, process_local=True)`` with the
rows ``process_rows(batch_size, mesh)``), both through
``jax.make_array_from_process_local_data``. On CPU the processes talk through gloo
(``jax_cpu_collectives_implementation``).

Checkpoints: :class:`jaxrnn.train.Checkpointer` (orbax) saves sharded arrays as they are, every
process writing its shards into the same directory. To restore onto another device count, pass
``like=abstract_state(state, mesh)`` (shapes, dtypes and the new mesh's shardings)::

    state, meta = checkpointer.restore(like=distributed.abstract_state(state, mesh))

(:func:`jaxrnn.train.run_training` resumes with ``like=state``, the live arrays; that restores
onto the device count the checkpoint was written with, and onto another one once
``Checkpointer`` keeps the shardings of ``like``'s arrays.)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxrnn.train.state import TrainState
from jaxrnn.train.step import LossFn, Metrics
from jaxrnn.train.step import make_train_step as _make_train_step

__all__ = [
    "BATCH_AXIS",
    "PMAP_AXIS",
    "abstract_state",
    "add_arguments",
    "batch_sharding",
    "check_batch_size",
    "initialize",
    "local_copy",
    "make_mesh",
    "make_pmap_train_step",
    "make_train_step",
    "pmap_batch",
    "pmap_state",
    "process_rows",
    "put_batch",
    "put_state",
    "replicated",
    "state_shardings",
    "unpmap_state",
]

PyTree = Any
BATCH_AXIS = "batch"
"""The mesh axis the batch is split along."""
PMAP_AXIS = "devices"
"""The ``jax.pmap`` axis name of :func:`make_pmap_train_step`."""

# ------------------------------------------------------------------------------ processes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--devices``, ``--coordinator-address``, ``--num-processes``, ``--process-id``.

    Args:
        parser: the script's parser; pass the parsed values to :func:`initialize` and
            :func:`make_mesh`.
    """
    group = parser.add_argument_group("devices and hosts (jaxrnn.distributed)")
    group.add_argument("--devices", type=int, default=None,
                       help="data-parallel over this many devices (default: every visible "
                            "device); the global batch is split across them")
    group.add_argument("--coordinator-address", default=None,
                       help="host:port of process 0, for a run over several processes "
                            "(or $JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, default=None,
                       help="number of processes (or $JAX_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, default=None,
                       help="this process's index, 0 .. num_processes-1 (or $JAX_PROCESS_ID)")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"initialize: ${name}={value!r}; expected an integer") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 300,
) -> bool:
    """Joins a multi-process run (``jax.distributed.initialize``), or does nothing.

    Call it before any other JAX computation. Arguments left ``None`` are read from
    ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. With none of
    them set, or one process, it returns ``False`` and the run is single-process. On CPU
    the processes' collectives use gloo.

    Args:
        coordinator_address: ``host:port`` of process 0 (it listens there).
        num_processes: number of processes in the run.
        process_id: this process's index in ``0 .. num_processes - 1``.
        timeout_s: seconds to wait for every process to connect.

    Returns:
        ``True`` when this process joined a run of more than one process.

    Raises:
        ValueError: if only some of the three are given, or they are out of range.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None:
        num_processes = _env_int("JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("JAX_PROCESS_ID")
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
             "process_id": process_id}
    if all(v is None for v in given.values()) or (num_processes == 1 and process_id in (0, None)):
        return False
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise ValueError(
            f"initialize: a multi-process run needs coordinator_address, num_processes and "
            f"process_id (flags or $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, "
            f"$JAX_PROCESS_ID); got {given}, missing {missing}"
        )
    if not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"initialize: num_processes must be an int >= 1; got {num_processes!r}")
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ValueError(
            f"initialize: process_id must be an int in [0, {num_processes}); got {process_id!r}"
        )
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=timeout_s)
    return True


# ------------------------------------------------------------------------------ mesh


def make_mesh(num_devices: int | None = None, *, axis_name: str = BATCH_AXIS) -> Mesh:
    """A one-axis mesh over ``num_devices`` devices for data parallelism.

    Args:
        num_devices: how many devices (the first ones of ``jax.devices()``); ``None``: all
            of them. With several processes it must be all of them (each process brings its
            local devices).
        axis_name: the mesh axis name.

    Returns:
        ``Mesh(devices, (axis_name,))`` with an ``Auto`` axis (XLA decides the collectives).

    Raises:
        ValueError: if ``num_devices`` is not in ``1 .. jax.device_count()``.
    """
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if (not isinstance(num_devices, int | np.integer) or isinstance(num_devices, bool)
            or not 1 <= num_devices <= len(devices)):
        raise ValueError(
            f"make_mesh: num_devices (--devices) is {num_devices!r}; expected an int in 1 .. "
            f"{len(devices)} (the visible {devices[0].platform} devices; on CPU, more with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N set before jax is imported)"
        )
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ValueError(
            f"make_mesh: num_devices (--devices) is {num_devices} but a run of "
            f"{jax.process_count()} processes must use all {len(devices)} devices; limit each "
            "process's devices instead (e.g. CUDA_VISIBLE_DEVICES)"
        )
    return jax.make_mesh((int(num_devices),), (axis_name,), axis_types=(AxisType.Auto,),
                         devices=devices[:num_devices])


def _axis(mesh: Mesh) -> str:
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
        raise ValueError(
            f"jaxrnn.distributed: mesh must be a one-axis jax.sharding.Mesh (from make_mesh); "
            f"got {mesh!r}"
        )
    return mesh.axis_names[0]


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    _axis(mesh)
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Axis 0 (the batch) split across the mesh's devices, in order."""
    return NamedSharding(mesh, PartitionSpec(_axis(mesh)))


def check_batch_size(batch_size: int, mesh: Mesh, *, name: str = "batch_size") -> int:
    """Returns the per-device batch size, or raises if the devices do not divide the batch.

    Args:
        batch_size: the global batch size.
        mesh: from :func:`make_mesh`.
        name: how to call ``batch_size`` in the error (e.g. ``"--batch-size"``).

    Raises:
        ValueError: if ``batch_size`` is not a positive multiple of the device count.
    """
    n = mesh.size
    if batch_size < 1 or batch_size % n:
        divisors = [d for d in range(1, n + 1) if batch_size >= 1 and batch_size % d == 0]
        raise ValueError(
            f"{name}={batch_size} is not divisible by the {n} devices it is split across; use a "
            f"{name} that is a multiple of {n}, or fewer devices (--devices N with N one of "
            f"{divisors}). The global batch does not depend on the device count."
        )
    return batch_size // n


def process_rows(batch_size: int, mesh: Mesh) -> slice:
    """The rows of the global batch this process feeds (its devices' shards).

    Args:
        batch_size: the global batch size (a multiple of ``mesh.size``).
        mesh: from :func:`make_mesh`.

    Returns:
        ``slice(start, stop)``: pass ``global_batch[start:stop]`` (or load only those rows)
        to ``put_batch(..., process_local=True)``.
    """
    check_batch_size(batch_size, mesh)
    indices = batch_sharding(mesh).addressable_devices_indices_map((batch_size,)).values()
    spans = sorted({(index[0].start or 0, index[0].stop or batch_size) for index in indices})
    start, stop = spans[0][0], spans[-1][1]
    if sum(b - a for a, b in spans) != stop - start:
        raise ValueError(
            f"process_rows: process {jax.process_index()}'s devices hold rows {spans}, which "
            "are not contiguous; build the mesh with make_mesh (devices in process order)"
        )
    return slice(start, stop)


# ------------------------------------------------------------------------------ placement


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


# ------------------------------------------------------------------------------ steps


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
