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


def check_nonnegative_int(where: str, name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{where}: {name} must be an integer >= 0; got {value!r}")


def check_real(where: str, name: str, value: Any, *, positive: bool = False) -> None:
    """Raises ValueError unless ``value`` is a finite real number (> 0 with ``positive``)."""
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool
    )
    if not number or not np.isfinite(value) or (positive and not value > 0):
        want = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{where}: {name} must be {want}; got {value!r}")


def check_probability(where: str, name: str, value: Any) -> None:
    """Raises ValueError unless ``value`` is a number in [0, 1) (a dropout rate)."""
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool
    )
    if not number or not 0.0 <= value < 1.0:
        raise ValueError(f"{where}: {name} must lie in [0, 1); got {value!r}")


def check_bool(where: str, name: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{where}: {name} must be True or False; got {value!r}")


def check_float_dtype(where: str, name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raises TypeError unless ``value`` names a floating dtype (or is None with allow_none)."""
    if value is None and allow_none:
        return
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        allowed = "None or " if allow_none else ""
        raise TypeError(
            f"{where}: {name}={value!r}; expected {allowed}a floating dtype such as "
            "jnp.float32 or jnp.bfloat16"
        )


def check_key(where: str, key: Any) -> None:
    """Raises TypeError unless ``key`` is a PRNG key (raw ``uint32[2]`` or a typed key)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if np.ndim(key) == 0:
            return
    elif dtype is not None and dtype == jnp.uint32 and np.shape(key) == (2,):
        return
    got = f"{type(key).__name__} {key!r}" if dtype is None else (
        f"an array of shape {tuple(np.shape(key))} and dtype {dtype}"
    )
    raise TypeError(
        f"{where}: key is {got}; expected one PRNG key, jax.random.PRNGKey(seed) or "
        "jax.random.key(seed)"
    )


def check_fields(
    where: str,
    obj: Any,
    *,
    positive_ints: Sequence[str] = (),
    nonnegative_ints: Sequence[str] = (),
    reals: Sequence[str] = (),
    positive_reals: Sequence[str] = (),
    probabilities: Sequence[str] = (),
    bools: Sequence[str] = (),
    float_dtypes: Sequence[str] = (),
    optional_float_dtypes: Sequence[str] = (),
) -> None:
    """Construction-time checks of a dataclass's hyperparameters, each error naming the field."""
    for name in positive_ints:
        check_positive_int(where, name, getattr(obj, name))
    for name in nonnegative_ints:
        check_nonnegative_int(where, name, getattr(obj, name))
    for name in reals:
        check_real(where, name, getattr(obj, name))
    for name in positive_reals:
        check_real(where, name, getattr(obj, name), positive=True)
    for name in probabilities:
        check_probability(where, name, getattr(obj, name))
    for name in bools:
        check_bool(where, name, getattr(obj, name))
    for name in float_dtypes:
        check_float_dtype(where, name, getattr(obj, name))
    for name in optional_float_dtypes:
        check_float_dtype(where, name, getattr(obj, name), allow_none=True)


def check_ids(where: str, name: str, ids: Any, size: int) -> None:
    """Raises IndexError when concrete integer ``ids`` hold a value outside [0, size).

    Traced ids (under ``jax.jit``) are not checked here; callers document what they do then.
    """
    if not is_concrete(ids):
        return
    values = np.asarray(ids)
    if values.size == 0:
        return
    bad = values[(values < 0) | (values >= size)]
    if bad.size:
        raise IndexError(
            f"{where}: {name} holds {bad.size} id(s) outside [0, {size}), e.g. {int(bad[0])} "
            f"(min {int(values.min())}, max {int(values.max())}); ids must lie in [0, V) with "
            f"V = {size}"
        )


def check_params_like(where: str, params: Any, like: Any, source: str, *,
                      shapes: bool = True) -> None:
    """Raises ValueError unless ``params`` has the parameters of ``like`` (a pytree of
    ``jax.ShapeDtypeStruct``, e.g. ``jax.eval_shape`` of the model's ``init``), each of the
    same shape (with ``shapes=False``: the same names only). The message names the missing or
    unexpected parameters, or the one whose shape differs with the expected shape and
    ``source`` (what ``like`` came from)."""
    try:
        got = {jax.tree_util.keystr(path): np.shape(leaf)
               for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: params is {type(params).__name__}; expected the pytree "
                        f"returned by {source}") from err
    want = {jax.tree_util.keystr(path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(like)}
    if set(got) != set(want):
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        def listed(keys: list[str]) -> str:
            shown = ", ".join("params" + k for k in keys[:4])
            return shown + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "")

        parts = [f"missing {listed(missing)}" if missing else "",
                 f"unexpected {listed(extra)}" if extra else ""]
        raise ValueError(
            f"{where}: params do not fit {source}: {'; '.join(p for p in parts if p)} "
            "(params of another cell or model?)"
        )
    for key, shape in want.items():
        if shapes and tuple(got[key]) != shape:
            raise ValueError(
                f"{where}: params{key} has shape {fmt_shape(got[key])}; expected "
                f"{fmt_shape(shape)} from {source} (params of another size or cell?)"
            )


def check_model_params(where: str, model: Any, params: Any, input_size: int) -> None:
    """Checks that ``params`` has the parameter names of ``model.init(key, input_size)``
    (``jax.eval_shape``, nothing allocated): e.g. a bidirectional model given the params of a
    unidirectional one. Shapes are left to the cells' own checks, which name the expected
    input size."""
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    like = jax.eval_shape(lambda k: model.init(k, input_size), key)
    check_params_like(where, params, like, f"this {type(model).__name__}'s init(key, "
                      f"input_size={input_size})", shapes=False)
