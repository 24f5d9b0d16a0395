"""Synchronous, crash-safe checkpoints of a state pytree plus JSON metadata (orbax).

Layout under ``directory``: one folder per step, ``<step>/state`` (the arrays, orbax
``StandardSave``) and ``<step>/metadata`` (a JSON object). Orbax writes a step into
``<step>.orbax-checkpoint-tmp-<timestamp>/`` and renames it to ``<step>/`` only once every
item is written, so a process killed mid-save leaves a temporary folder that
:meth:`Checkpointer.latest_step` never returns (and that is removed the next time a
:class:`Checkpointer` opens the directory).

Each checkpoint's metadata also records a sha256 digest of its arrays (:func:`tree_digest`) and
whether every floating value is finite (:mod:`jaxrnn.train.integrity`).
:meth:`Checkpointer.restore` recomputes the digest and raises :class:`CorruptCheckpointError`
on a mismatch or an unreadable checkpoint; :meth:`Checkpointer.restore_intact` walks back to
the newest intact, finite checkpoint. A failed write (a full disk, a permission error) raises
:class:`CheckpointSaveError` naming the path and the errno, and leaves the earlier checkpoints
as they were.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxrnn.train.integrity import (  # noqa: F401  (tree_digest: re-exported)
    _DIGEST_KEY,
    _FINITE_KEY,
    _META_DIGEST_KEY,
    _RESERVED,
    CheckpointError,
    CheckpointSaveError,
    CorruptCheckpointError,
    NonFiniteStateError,
    _abstract,
    _fsync_tree,
    _legacy_layout,
    _metadata_digest,
    _non_finite_leaves,
    _one_line,
    _os_error,
    _quiet_orbax,
    to_host,
    tree_digest,
)

__all__ = [
    "CheckpointError",
    "CheckpointSaveError",
    "Checkpointer",
    "CorruptCheckpointError",
    "NonFiniteStateError",
    "tree_digest",
]

PyTree = Any
class Checkpointer:
    """A thin synchronous wrapper over ``orbax.checkpoint.CheckpointManager``.

    Example::

        with Checkpointer(out_dir / "checkpoints", max_to_keep=3) as ckpt:
            ckpt.save(int(state.step), state, {"epoch": 3, "metrics_lines": 120})
            ...
            state, meta = ckpt.restore(like=state)   # latest step

    Args:
        directory: folder for the step folders; created if missing.
        max_to_keep: keep the newest this many checkpoints (>= 1), deleting older ones
            after each successful save.
        fsync: after each save, ``fsync`` the new step's files and folders so the
            checkpoint also survives a power loss (a killed process cannot lose it
            either way).
        read_only: open an existing folder to restore from, changing nothing in it (no
            clean-up of a save in progress, so another process may be training into it);
            :meth:`save` is refused.

    Raises:
        FileNotFoundError: with ``read_only``, if ``directory`` does not exist.
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
                 fsync: bool = True, read_only: bool = False) -> None:
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError(
                f"Checkpointer: max_to_keep must be a positive int; got {max_to_keep!r}"
            )
        self.directory = Path(directory).absolute()
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"Checkpointer: no checkpoint folder {self.directory}")
        self._fsync, self._read_only = fsync, read_only
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(n=max_to_keep),
            enable_async_checkpointing=False,
            cleanup_tmp_directories=not read_only,
            create=not read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "metadata": ocp.JsonCheckpointHandler(),
            },
        )

    def save(self, step: int, state: PyTree, metadata: dict[str, Any], *,
             require_finite: bool = False) -> None:
        """Writes ``state`` and ``metadata`` as checkpoint ``step`` and waits until done.

        When this returns, the checkpoint is complete on disk (renamed from its temporary
        folder) and :meth:`latest_step` returns ``step``.

        Args:
            step: a non-negative step number, greater than every saved one.
            state: a pytree of arrays (``None`` leaves and empty containers allowed).
            metadata: a JSON-serialisable dict (floats round-trip exactly). The arrays'
                sha256 digest and finiteness are stored beside it (and removed again by
                :meth:`restore`).
            require_finite: refuse (before writing anything) a state holding NaN or infinity.

        Raises:
            ValueError: if ``step`` is negative or not newer than the latest checkpoint.
            TypeError: if ``metadata`` is not a dict.
            NonFiniteStateError: with ``require_finite``, a state holding NaN or infinity.
            CheckpointSaveError: the operating system refused a write (full disk, permissions,
                file size limit); the message names the path and the errno. The checkpoints
                saved before are intact.
        """
        if self._read_only:
            raise ValueError(f"Checkpointer.save: {self.directory} was opened read_only")
        if not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"Checkpointer.save: step must be an int >= 0; got {step!r}")
        if not isinstance(metadata, dict):
            raise TypeError(
                f"Checkpointer.save: metadata must be a JSON-serialisable dict; got "
                f"{type(metadata).__name__}"
            )
        reserved = [key for key in _RESERVED if key in metadata]
        if reserved:
            raise ValueError(f"Checkpointer.save: metadata keys {reserved} are reserved")
        latest = self.latest_step()
        if latest is not None and step <= latest:
            raise ValueError(
                f"Checkpointer.save: step={step} is not newer than the latest checkpoint "
                f"{latest} in {self.directory}"
            )
        host = to_host(state)
        bad = _non_finite_leaves(host)
        if bad and require_finite:
            raise NonFiniteStateError(int(step), bad)
        metadata = {**metadata, _DIGEST_KEY: tree_digest(host), _FINITE_KEY: not bad,
                    _META_DIGEST_KEY: _metadata_digest(metadata)}
        try:
            with _quiet_orbax():
                self._manager.save(
                    int(step),
                    args=ocp.args.Composite(
                        state=ocp.args.StandardSave(state),
                        metadata=ocp.args.JsonSave(metadata),
                    ),
                    force=True,
                )
                self._manager.wait_until_finished()
                self._manager.check_for_errors()
            if self._fsync:
                _fsync_tree(self.directory / str(int(step)))
        except Exception as err:
            found = _os_error(err)
            if found is None:
                raise
            self._discard_partial(int(step))
            code, path, text = found
            raise CheckpointSaveError(int(step), path or self.directory, code, text) from err

    def _discard_partial(self, step: int) -> None:
        """Removes what a failed save of ``step`` left (its temporary or final folder)."""
        for path in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(path, ignore_errors=True)
        final = self.directory / str(step)
        if final.is_dir():
            shutil.rmtree(final, ignore_errors=True)
        with contextlib.suppress(Exception):
            self._manager.reload()

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or ``None`` if there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all complete checkpoints, ascending."""
        return sorted(self._manager.all_steps())

    def restore(self, step: int | None = None, *, like: PyTree,
                allow_non_finite: bool = False) -> tuple[PyTree, dict[str, Any]]:
        """Reads checkpoint ``step`` (default: the latest) into the structure of ``like``.

        Args:
            step: which checkpoint; ``None`` for :meth:`latest_step`.
            like: a pytree with the target structure, shapes and dtypes: real arrays or
                ``jax.ShapeDtypeStruct`` leaves (e.g. a freshly initialised state, or
                ``jax.eval_shape`` of its constructor). Nothing is read from its values.
            allow_non_finite: also return a checkpoint saved holding NaN or infinity.

        Returns:
            ``(state, metadata)``: ``state`` has ``like``'s tree structure with arrays of
            the same shapes and dtypes, bitwise equal to what was saved.

        Raises:
            FileNotFoundError: if there is no checkpoint (or none at ``step``).
            ValueError: if the saved arrays' shapes or dtypes or the tree differ from
                ``like``.
            CorruptCheckpointError: the checkpoint cannot be read, its arrays differ from the
                sha256 digest saved with them, or (unless ``allow_non_finite``) it holds NaN
                or infinite values.
        """
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(
                    f"Checkpointer.restore: no checkpoint in {self.directory}"
                )
        elif step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"Checkpointer.restore: no checkpoint for step={step} in {self.directory}; "
                f"saved steps: {self.all_steps()}"
            )
        abstract = _abstract(like)
        try:
            self._check_matches(step, abstract)
        except ValueError:
            legacy = _legacy_layout(abstract)
            if jax.tree.structure(legacy) == jax.tree.structure(abstract):
                raise
            self._check_matches(step, legacy)  # an older layout of the same arrays
            state, metadata = self.restore(step, like=legacy,
                                           allow_non_finite=allow_non_finite)
            leaves = jax.tree.leaves(state)
            return jax.tree.unflatten(jax.tree.structure(abstract), leaves), metadata
        failure = None
        with _quiet_orbax():
            try:
                restored = self._manager.restore(
                    int(step),
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract),
                        metadata=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as err:  # the arrays were listed, but reading them failed
                failure = _one_line(err)
            if failure is not None:
                gc.collect()  # orbax's abandoned reads, while their GeneratorExit is silenced
        if failure is not None:
            raise CorruptCheckpointError(int(step), self.directory / str(step), failure)
        state = restored.state
        metadata = dict(restored.metadata or {})
        saved_digest = metadata.pop(_DIGEST_KEY, None)
        finite = metadata.pop(_FINITE_KEY, None)
        saved_meta_digest = metadata.pop(_META_DIGEST_KEY, None)
        if saved_meta_digest is not None and _metadata_digest(metadata) != saved_meta_digest:
            raise CorruptCheckpointError(
                int(step), self.directory / str(step),
                "its metadata differs from the sha256 digest saved with it (a changed or "
                "damaged file)")
        want_leaves, want_def = jax.tree.flatten(abstract)
        got_leaves, got_def = jax.tree.flatten(state)
        if got_def != want_def:
            raise ValueError(
                f"Checkpointer.restore: checkpoint {step} has tree {got_def}; expected "
                f"{want_def} (from like)"
            )
        for path_leaf, want, got in zip(
            jax.tree_util.tree_leaves_with_path(abstract), want_leaves, got_leaves, strict=True
        ):
            if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
                raise ValueError(
                    f"Checkpointer.restore: leaf {jax.tree_util.keystr(path_leaf[0])} of "
                    f"checkpoint {step} has shape {tuple(got.shape)} dtype {got.dtype}; "
                    f"expected shape {tuple(want.shape)} dtype {want.dtype} (from like)"
                )
        if saved_digest is not None and tree_digest(got_leaves) != saved_digest:
            raise CorruptCheckpointError(
                int(step), self.directory / str(step),
                f"its arrays' sha256 {tree_digest(got_leaves)[:12]}... differs from the "
                f"{saved_digest[:12]}... saved with them (a changed or damaged file)")
        if finite is False and not allow_non_finite:
            raise CorruptCheckpointError(
                int(step), self.directory / str(step), "it holds NaN or infinite values")
        return jax.tree.unflatten(want_def, got_leaves), metadata

    def restore_intact(self, *, like: PyTree, quarantine: bool = True,
                       report: Any = None) -> tuple[int, PyTree, dict[str, Any]] | None:
        """The newest checkpoint that reads back intact: ``(step, state, metadata)``.

        Checkpoints that are corrupt (:class:`CorruptCheckpointError`: unreadable, a digest
        mismatch, NaN/inf values) are skipped, newest first, each reported in one line through
        ``report`` (default: :func:`print` to stderr); with ``quarantine`` they are moved to
        ``<directory>.corrupt/<step>`` so that the run can save those steps again.

        Returns:
            ``None`` if the directory holds no checkpoint at all.

        Raises:
            CorruptCheckpointError: every checkpoint is corrupt (the newest one's error).
            ValueError: a checkpoint does not match ``like`` (a different model, not damage).
        """
        if report is None:
            def report(message: str) -> None:
                print(message, file=sys.stderr, flush=True)

        steps = self.all_steps()
        if not steps:
            return None
        first: CorruptCheckpointError | None = None
        bad: list[int] = []
        for step in reversed(steps):
            try:
                state, metadata = self.restore(step, like=like)
            except CorruptCheckpointError as err:
                first = first or err
                bad.append(step)
                report(f"warning: {err}; skipping it")
                continue
            if bad and quarantine:
                self._quarantine(bad)
            if bad:
                report(f"resuming from checkpoint {step}, the newest intact one (skipped "
                       f"{', '.join(map(str, bad))})")
            return step, state, metadata
        assert first is not None
        raise CorruptCheckpointError(
            first.step, first.path,
            f"{first.reason}; and no earlier checkpoint in {self.directory} is intact "
            f"(tried {', '.join(map(str, reversed(steps)))})")

    def _quarantine(self, steps: list[int]) -> None:
        """Moves the checkpoints ``steps`` to ``<directory>.corrupt/``."""
        aside = self.directory.with_name(self.directory.name + ".corrupt")
        aside.mkdir(exist_ok=True)
        for step in steps:
            target = aside / str(step)
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(self.directory / str(step)), str(target))
        self._manager.reload()

    def restore_entry(self, name: str, step: int | None = None, *, like: PyTree) -> PyTree:
        """Reads one top-level entry of a saved state, e.g. ``"params"`` of a
        :class:`~jaxrnn.train.TrainState`, without the rest (no optimizer is needed).

        Args:
            name: the entry's field or key in the saved state.
            step: which checkpoint; ``None`` for :meth:`latest_step`.
            like: the entry's structure, shapes and dtypes (e.g. ``jax.eval_shape`` of the
                model's ``init``).

        Returns:
            The entry, with ``like``'s tree structure, bitwise equal to what was saved.

        Raises:
            FileNotFoundError: if there is no checkpoint (or none at ``step``).
            ValueError: if the saved entry's arrays differ from ``like`` in names, shapes or
                dtypes, or the state has no entry ``name``.
        """
        step = self._existing_step("restore_entry", step)
        abstract = {name: _abstract(like)}
        self._check_matches(step, abstract, entry=name)
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)
        handler = ocp.PyTreeCheckpointHandler()
        try:
            restored = handler.restore(
                self.directory / str(int(step)) / "state",
                args=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args,
                                            partial_restore=True),
            )
        finally:
            handler.close()
        leaves = [jax.numpy.asarray(leaf) for leaf in jax.tree.leaves(restored[name])]
        return jax.tree.unflatten(jax.tree.structure(abstract[name]), leaves)

    def _existing_step(self, where: str, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
            if step is None:
                raise FileNotFoundError(f"Checkpointer.{where}: no checkpoint in {self.directory}")
        elif step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"Checkpointer.{where}: no checkpoint for step={step} in {self.directory}; "
                f"saved steps: {self.all_steps()}"
            )
        return step

    def _check_matches(self, step: int, abstract: PyTree, entry: str | None = None) -> None:
        """Raises before reading if the saved arrays differ from ``abstract`` (orbax would
        otherwise silently cast a different dtype); with ``entry``, only the saved arrays
        under that top-level entry are compared."""
        try:
            with _quiet_orbax():
                tree = self._manager.item_metadata(step)["state"].tree
            saved = {leaf.name: (tuple(leaf.shape), np.dtype(leaf.dtype))
                     for leaf in jax.tree.leaves(tree)}
        except Exception as err:
            raise CorruptCheckpointError(
                int(step), self.directory / str(step),
                f"its array index cannot be read ({_one_line(err)})") from err
        where = "restore" if entry is None else "restore_entry"
        if entry is not None:
            saved = {key: value for key, value in saved.items()
                     if key == entry or key.startswith(f"{entry}.")}
            if not saved:
                raise ValueError(
                    f"Checkpointer.{where}: checkpoint {step} in {self.directory} has "
                    f"no arrays under {entry!r}"
                )
        names = jax.tree.leaves(ocp.tree.get_param_names(abstract, include_empty_nodes=False))
        wanted = {
            name: (tuple(leaf.shape), np.dtype(leaf.dtype))
            for name, leaf in zip(names, jax.tree.leaves(abstract), strict=True)
        }
        if set(saved) != set(wanted):
            raise ValueError(
                f"Checkpointer.{where}: checkpoint {step} in {self.directory} holds arrays "
                f"{sorted(saved)}; like has {sorted(wanted)} (missing from the checkpoint: "
                f"{sorted(set(wanted) - set(saved))}, extra: {sorted(set(saved) - set(wanted))})"
            )
        for name, (shape, dtype) in wanted.items():
            if saved[name] != (shape, dtype):
                raise ValueError(
                    f"Checkpointer.{where}: array {name!r} of checkpoint {step} has shape "
                    f"{saved[name][0]} dtype {saved[name][1]}; expected shape {shape} dtype "
                    f"{dtype} (from like)"
                )

    def close(self) -> None:
        """Waits for pending work and releases orbax's resources."""
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
