"""Argument checks for public entry points.

Every public function checks its inputs before any XLA work and raises an error that names the
argument, what it got and what it wanted (see STYLE.md). Shapes are static under ``jax.jit``,
so these checks also run (once, at trace time) inside compiled code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def fmt_shape(shape: Sequence[int | None]) -> str:
    parts = ["?" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_float(where: str, name: str, x: Any) -> None:
    """Raises TypeError unless ``x`` is an array with a floating dtype."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        raise TypeError(f"{where}: {name} must be a float array; got {type(x).__name__}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{where}: {name} has dtype {dtype}; expected a floating dtype "
            "(float32, bfloat16, float16 or float64)"
        )


def check_shape(
    where: str, name: str, x: Any, expected: Sequence[int | None], hint: str = ""
) -> None:
    """Raises ValueError unless ``x.shape`` matches ``expected`` (None matches any size)."""
    shape = tuple(np.shape(x))
    ok = len(shape) == len(expected) and all(
        e is None or e == s for s, e in zip(shape, expected, strict=True)
    )
    if not ok:
        msg = f"{where}: {name} has shape {fmt_shape(shape)}; expected {fmt_shape(expected)}"
        raise ValueError(msg + (f" {hint}" if hint else ""))


def check_int_array(where: str, name: str, x: Any, expected: Sequence[int | None]) -> None:
    """Raises TypeError for a non-integer array and ValueError for a wrong shape."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        got = dtype if dtype is not None else type(x).__name__
        raise TypeError(f"{where}: {name} has dtype {got}; expected an integer array")
    check_shape(where, name, x, expected)


def check_bool_array(where: str, name: str, x: Any, expected: Sequence[int | None]) -> None:
    """Raises TypeError for a non-boolean array and ValueError for a wrong shape."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or dtype != jnp.bool_:
        got = dtype if dtype is not None else type(x).__name__
        raise TypeError(f"{where}: {name} has dtype {got}; expected a boolean array")
    check_shape(where, name, x, expected)


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values known on the host (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def check_positive_int(where: str, name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where}: {name} must be a positive integer; got {value!r}")


def check_tree_like(where: str, name: str, tree: Any, like: Any) -> None:
    """Checks that ``tree`` has the structure, shapes and dtypes of ``like``."""
    got_def = jax.tree_util.tree_structure(tree)
    want_def = jax.tree_util.tree_structure(like)
    if got_def != want_def:
        raise ValueError(f"{where}: {name} has structure {got_def}; expected {want_def}")
    for path, got, want in zip(
        jax.tree_util.tree_leaves_with_path(tree),
        jax.tree_util.tree_leaves(tree),
        jax.tree_util.tree_leaves(like),
        strict=True,
    ):
        leaf = name + jax.tree_util.keystr(path[0])
        if np.shape(got) != np.shape(want):
            raise ValueError(
                f"{where}: {leaf} has shape {fmt_shape(np.shape(got))}; "
                f"expected {fmt_shape(np.shape(want))}"
            )
        check_float(where, leaf, got)
