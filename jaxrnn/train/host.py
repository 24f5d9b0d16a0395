"""The host allocator for CPU training scripts: keep freed memory in the process (glibc).

XLA:CPU allocates a compiled step's temporary buffers with ``malloc`` and frees them when the
step ends. glibc serves large blocks with ``mmap`` and unmaps them on ``free``, and trims the
heap's top back to the kernel above ``M_TRIM_THRESHOLD``; the next step therefore writes into
fresh pages, which the kernel zero-fills on first touch. A PTB small training step took 9,500 to
10,000 minor page faults (about 38 MB of fresh pages) every step that way. With glibc's
documented tunables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` raised, freed
blocks stay in the process and the next step reuses them: 26-748 faults per step, and the step
went from 57.3-62.8 to 46.9-52.0 ms on a 2-core AMD EPYC (2026-11-30,
benchmarks/STRATEGY_HISTORY.md).

Those two are not enough for blocks above 64 MiB requested by XLA's worker threads: a thread
other than the main one allocates from its own arena, whose heaps glibc caps at 64 MiB on 64-bit
Linux (``HEAP_MAX_SIZE``), so a larger block is mmapped whatever the threshold and unmapped again
on ``free``. ``MALLOC_ARENA_MAX=1`` sends every thread to the main arena, which grows without
that cap. LSTM layer training step at (B, T, H) = (256, 100, 512), fused: 2,213 ms and 258,401
faults per step with glibc's defaults, 1,926 ms and 0 faults with all three variables (the same
machine and date).
The cost: memory freed by the program is not handed back to the system while the process runs,
so its resident size stays at its peak (what a training loop reaches anyway), and all threads
share one arena's lock (XLA allocates a few buffers per step, not per op).

glibc reads these variables once, when the process starts; setting them later with
``mallopt()`` (through ctypes) was not reliable: 1 to 10,460 faults per step over four runs
before jax was imported (thresholds only), 0 to 7,763 with all three settings before
the first computation and no effect after it (LSTM layer at (64, 100, 256), against
30,610 by default and 0 with the variables at start). So
:func:`reexec_with_allocator_settings` starts the running program again, once, with the
variables set (``os.execve``: same process id, same arguments, same interpreter options).
The experiment scripts call it first thing under ``__main__``. A variable the user has set
keeps the user's value; only the missing ones are added, and when none is missing (which is
also what stops a second re-execution) nothing happens. It does nothing either

- where the platform is not Linux with glibc,
- where the run will not compute on the CPU (measured for XLA:CPU only): decided before jax is
  imported, from what the user asked for (``JAX_PLATFORMS``: its first entry is the default
  backend) or, without ``JAX_PLATFORMS``, from whether a GPU or TPU plugin of jax is installed
  (:func:`runs_on_cpu`), or
- where ``JAXRNN_SYSTEM_MALLOC=1`` is set (opt out).

Determinism on GPUs: XLA:GPU's scatters and some reductions use atomics, so two runs of a
training step can differ in the last bits, and kill -9 + ``--resume`` is then not bitwise.
:func:`use_deterministic_ops` adds ``--xla_gpu_deterministic_ops=true`` to ``XLA_FLAGS``
before the backend starts (the scripts' ``--deterministic``); it makes those operations
deterministic at a cost in speed (XLA rewrites scatters as sorted segment sums) and has no
effect on a CPU or TPU, where runs are deterministic already.

Nothing in the library calls it: importing jaxrnn never changes the process.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence

__all__ = [
    "ALLOCATOR_ENV",
    "OPT_OUT_ENV",
    "allocator_environ",
    "allocator_settings",
    "reexec_with_allocator_settings",
    "runs_on_cpu",
    "use_deterministic_ops",
]

# glibc's tunables (mallopt(3): M_MMAP_THRESHOLD, M_TRIM_THRESHOLD in bytes, M_ARENA_MAX)
ALLOCATOR_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": "4000000000",
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
    "MALLOC_ARENA_MAX": "1",
}
OPT_OUT_ENV = "JAXRNN_SYSTEM_MALLOC"
DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
ACCELERATOR_PLUGINS = (
    "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm6_plugin", "jax_rocm7_plugin", "libtpu",
)
"""Modules whose presence means jax would pick a GPU or TPU by default."""


def runs_on_cpu(environ: Mapping[str, str] | None = None,
                find_spec: Callable[[str], object] = importlib.util.find_spec) -> bool:
    """Whether jax will compute on the CPU, decided without importing jax: the first entry of
    ``JAX_PLATFORMS`` when it is set, else True unless a GPU or TPU plugin is installed
    (:data:`ACCELERATOR_PLUGINS`)."""
    environ = os.environ if environ is None else environ
    requested = environ.get("JAX_PLATFORMS", "").strip()
    if requested:
        return requested.split(",")[0].strip().lower() == "cpu"
    return not any(_installed(name, find_spec) for name in ACCELERATOR_PLUGINS)


def _installed(name: str, find_spec: Callable[[str], object]) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def use_deterministic_ops(environ: MutableMapping[str, str] | None = None) -> None:
    """Adds ``--xla_gpu_deterministic_ops=true`` to ``XLA_FLAGS`` (once). Call it before jax
    starts its backend (before the first computation); see the module docstring for what it
    costs."""
    environ = os.environ if environ is None else environ
    flags = environ.get("XLA_FLAGS", "").split()
    if DETERMINISTIC_FLAG not in flags:
        environ["XLA_FLAGS"] = " ".join([*flags, DETERMINISTIC_FLAG])


def _wants_reexec(environ: Mapping[str, str], system: str, libc: str) -> bool:
    if system != "Linux" or libc != "glibc" or not runs_on_cpu(environ):
        return False
    if environ.get(OPT_OUT_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    return not all(name in environ for name in ALLOCATOR_ENV)


def allocator_environ(
    environ: Mapping[str, str] | None = None, *, system: str | None = None,
    libc: str | None = None,
) -> dict[str, str]:
    """The environment a program started from ``environ`` runs under after
    :func:`reexec_with_allocator_settings`: ``environ`` plus the variables of
    :data:`ALLOCATOR_ENV` it lacks where the rules above apply (its own values win), ``environ``
    unchanged otherwise (e.g. for a comparison run's subprocess)."""
    environ = os.environ if environ is None else environ
    system = platform.system() if system is None else system
    libc = platform.libc_ver()[0] if libc is None else libc
    if _wants_reexec(environ, system, libc):
        return {**ALLOCATOR_ENV, **environ}
    return dict(environ)


def allocator_settings(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The allocator variables as this process sees them (for a run's config.json)."""
    environ = os.environ if environ is None else environ
    return {name: environ.get(name) for name in (*ALLOCATOR_ENV, OPT_OUT_ENV)}


def reexec_with_allocator_settings(
    *,
    environ: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    executable: str | None = None,
    system: str | None = None,
    libc: str | None = None,
    execve: Callable[[str, Sequence[str], Mapping[str, str]], object] = os.execve,
) -> bool:
    """Re-executes this program with :data:`ALLOCATOR_ENV` set, when that applies (see above).

    Call it before the program does any work (it never returns when it re-executes). The
    keyword arguments exist for tests; by default they are the running process's environment,
    ``sys.orig_argv``, ``sys.executable``, ``platform.system()``, ``platform.libc_ver()[0]``
    and ``os.execve``. Returns False when nothing was done (and True only from a fake
    ``execve`` that returns).
    """
    environ = os.environ if environ is None else environ
    new_environ = allocator_environ(environ, system=system, libc=libc)
    argv = list(sys.orig_argv if argv is None else argv)
    executable = sys.executable if executable is None else executable
    if new_environ == dict(environ) or not executable or not argv:
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    execve(executable, argv, new_environ)
    return True
