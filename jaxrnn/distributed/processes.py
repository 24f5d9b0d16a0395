"""Joining a run of several processes (multi-controller JAX)."""

from __future__ import annotations

import os

import jax


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
