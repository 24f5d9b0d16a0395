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
``--process-id`` from the experiments' device flags, or the environment variables
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

from jaxrnn.distributed.mesh import (
    BATCH_AXIS,
    batch_sharding,
    check_batch_size,
    make_mesh,
    process_rows,
    replicated,
)
from jaxrnn.distributed.placement import (
    abstract_state,
    local_copy,
    put_batch,
    put_state,
    state_shardings,
)
from jaxrnn.distributed.pmap import (
    PMAP_AXIS,
    make_pmap_train_step,
    pmap_batch,
    pmap_state,
    unpmap_state,
)
from jaxrnn.distributed.processes import initialize
from jaxrnn.distributed.step import make_train_step

__all__ = [
    "BATCH_AXIS",
    "PMAP_AXIS",
    "abstract_state",
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
