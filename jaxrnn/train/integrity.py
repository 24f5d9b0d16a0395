"""What makes a checkpoint trustworthy: the errors, the digests and the OS-error reading that
:class:`jaxrnn.train.Checkpointer` uses.

A saved checkpoint's metadata records a sha256 digest of its arrays (:func:`tree_digest`) and of
the metadata itself, and whether every floating value is finite, under reserved keys. Restoring
recomputes both digests; a mismatch, an unreadable array index or a non-finite state is a
:class:`CorruptCheckpointError` (or :class:`NonFiniteStateError` at save time). A failed write
is a :class:`CheckpointSaveError` with the path and the errno, read from Python's ``OSError`` or
from tensorstore's message.
"""

from __future__ import annotations

import contextlib
import errno as errno_module
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

_DIGEST_KEY = "_jaxrnn_state_sha256"
_FINITE_KEY = "_jaxrnn_state_finite"
_META_DIGEST_KEY = "_jaxrnn_metadata_sha256"
_RESERVED = (_DIGEST_KEY, _FINITE_KEY, _META_DIGEST_KEY)


class CheckpointError(Exception):
    """Base class of the checkpoint errors below."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint cannot be read, or its arrays differ from the digest saved with them.

    Attributes:
        step: the checkpoint's step.
        path: its folder.
    """

    def __init__(self, step: int, path: Path, reason: str) -> None:
        self.step, self.path, self.reason = step, path, reason
        super().__init__(f"checkpoint {step} at {path} is corrupt: {reason}")


class CheckpointSaveError(CheckpointError, OSError):
    """Writing a checkpoint failed in the operating system (e.g. ``ENOSPC``, a full disk).

    The checkpoints saved before are intact. Attributes: ``step``, ``path`` (what could not
    be written), ``errno`` (``None`` when the OS did not say).
    """

    def __init__(self, step: int, path: str | os.PathLike, err_no: int | None,
                 detail: str) -> None:
        name = errno_module.errorcode.get(err_no, "") if err_no is not None else ""
        code = f"errno {err_no} {name}".strip() if err_no is not None else "no errno"
        super().__init__(
            f"cannot save checkpoint {step}: {detail} ({code}) writing {path}; the "
            f"earlier checkpoints are intact"
        )
        self.errno, self.step, self.path = err_no, step, Path(path)


class NonFiniteStateError(CheckpointError, ValueError):
    """``save(..., require_finite=True)`` got a state holding NaN or infinity (nothing was
    written). ``leaves`` names the offending arrays."""

    def __init__(self, step: int, leaves: list[str]) -> None:
        self.step, self.leaves = step, leaves
        shown = ", ".join(leaves[:5]) + (", ..." if len(leaves) > 5 else "")
        super().__init__(
            f"checkpoint {step} not saved: the state holds NaN or infinite values in {shown}"
        )


def to_host(tree: PyTree) -> PyTree:
    """``tree`` as numpy arrays on this host. An array spread over several processes' devices
    (multi-controller JAX) is gathered from all of them (``process_allgather``, a collective:
    every process must call this at the same point, as every process saves and restores)."""
    def one(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return x

    return jax.device_get(jax.tree.map(one, tree))


def tree_digest(tree: PyTree) -> str:
    """sha256 over every leaf's dtype, shape and bytes, in tree order.

    Equal digests mean bitwise-equal pytrees (of the same leaf order). The arrays are copied
    to the host.
    """
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(to_host(tree)):
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{leaf.dtype}{leaf.shape}".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()


def _metadata_digest(metadata: dict[str, Any]) -> str:
    """sha256 of the metadata as canonical JSON."""
    text = json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _non_finite_leaves(tree: PyTree) -> list[str]:
    """Paths of the floating leaves of a host pytree that hold NaN or infinity."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        leaf = np.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and not np.isfinite(
                leaf.astype(np.float32) if leaf.dtype.itemsize < 4 else leaf).all():
            bad.append(jax.tree_util.keystr(path) or "<root>")
    return bad


_OS_CODE = re.compile(r"os_error_code='?(\d+)")
_TS_PATH = re.compile(r'Failed (?:writing|to write)[^"]*"([^"]+)"')


def _os_error(err: BaseException) -> tuple[int | None, str | None, str] | None:
    """``(errno, path, strerror)`` if ``err`` (or its cause) is an OS error, including one
    reported by tensorstore as ``[os_error_code='28']``; else ``None``."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno is not None:
            return err.errno, err.filename, err.strerror or str(err)
        match = _OS_CODE.search(str(err))
        if match:
            code = int(match.group(1))
            path = _TS_PATH.search(str(err))
            return code, path.group(1) if path else None, os.strerror(code)
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Silences orbax's own error log (a traceback on stderr per failed write thread) and the
    "Exception ignored" reports of its abandoned reads: the failure is raised to the caller as
    one exception instead."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:  # a failed read's coroutines, closed when collected
        closed_loop = (unraisable.exc_type is RuntimeError
                       and "Event loop is closed" in str(unraisable.exc_value))
        if unraisable.exc_type is not GeneratorExit and not closed_loop:
            hook(unraisable)

    sys.unraisablehook = quiet
    try:
        yield
    finally:
        logger.setLevel(level)
        sys.unraisablehook = hook


def _fsync_tree(root: Path) -> None:
    """Flushes every file under ``root``, then the folders, then ``root``'s parent."""
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            fd = os.open(os.path.join(dirpath, filename), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in (*[Path(d) for d, _, _ in os.walk(root)], root.parent):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _abstract(tree: PyTree) -> PyTree:
    """``tree`` with every leaf replaced by a ``jax.ShapeDtypeStruct`` of its shape/dtype."""

    def leaf(x: Any) -> jax.ShapeDtypeStruct:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        # A jax.Array's sharding says where to restore it (e.g. onto another device count).
        sharding = x.sharding if isinstance(x, jax.Array) else None
        return jax.ShapeDtypeStruct(np.shape(x), dtype, sharding=sharding)

    return jax.tree.map(leaf, tree)


def _legacy_layout(tree: PyTree) -> PyTree:
    """``tree`` with the NamedTuples marked ``saved_as_tuple`` (StackedRNN's per-layer states)
    as the bare tuples that checkpoints written by jaxrnn 0.1.0 hold."""

    def marked(x: Any) -> bool:
        return getattr(type(x), "saved_as_tuple", False)

    return jax.tree.map(lambda x: tuple(x) if marked(x) else x, tree, is_leaf=marked)


def _one_line(err: BaseException) -> str:
    """The first line of an error's message, and of its cause's (tensorstore's messages run
    to many lines)."""
    parts = []
    while err is not None and len(parts) < 2:
        text = str(err).strip()
        text = text.splitlines()[0] if text else type(err).__name__
        text = text.split(" See full TensorStore details")[0]
        parts.append(text[:240])
        err = err.__cause__
    return "; ".join(parts)
