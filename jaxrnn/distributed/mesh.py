"""The one-axis device mesh of data parallelism, its shardings and the batch split."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"
"""The mesh axis the batch is split along."""


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
