"""The cell protocol shared by every recurrent cell, built-in or yours, and the helpers around it.

A cell is an object (a frozen, hashable dataclass is best: it can then be a static argument to
``jax.jit``) with three pure functions. That is the whole required contract:

- ``init(key, input_size) -> params``: any pytree of arrays (the built-in cells use a flat dict
  whose layout each documents).
- ``initial_carry(params, batch_shape=()) -> carry``: any pytree of float arrays with leading
  ``batch_shape`` (a NamedTuple with named fields, or a dict, reads best).
- ``step(params, carry, x) -> (carry, y)``: ONE example, ``x`` of shape ``[input_size]``, ``y`` of
  shape ``[output_size]``; batch with ``jax.vmap`` or run over time with :func:`jaxrnn.scan`.

Everything else a driver or layer uses is optional, and derived or replaced when absent:

- ``output_size`` (attribute or property): otherwise :func:`output_size` derives it from
  ``jax.eval_shape`` of ``step``. The input-size checks of the drivers also come from
  ``jax.eval_shape`` of ``step``, never from a parameter's name.
- ``input_projection(params, x) -> xp`` and ``recurrent_step(params, carry, xp, h_mask=None)``:
  ``step`` split into its time-parallel and its sequential part, with
  ``step(p, c, x) == recurrent_step(p, c, input_projection(p, x))``. With them, ``strategy=
  "hoisted"`` projects all time steps in one large matmul; without them a cell runs "in_loop"
  ("fused" and "cudnn" fall back to it; an explicit "hoisted" is a ``ValueError``).
- ``recurrent_mask_field: str``: the carry field (NamedTuple field or dict key) that variational
  dropout's recurrent mask multiplies (Gal & Ghahramani, 2016); the mask has that field's shape
  for one example (:func:`recurrent_mask_shape`). A cell with ``recurrent_step`` receives it as
  ``h_mask`` and applies it where the field enters the recurrence; a cell without it gets the
  field multiplied by the mask before ``step``. ``recurrent_dropout > 0`` on a cell that declares
  no field is a ``ValueError``.
- Linear recurrences ``s_t = a_t * s_{t-1} + b_t`` (for :func:`jaxrnn.associative_scan`):
  ``input_projection``, ``coefficients(params, xp) -> (a, b)`` (or ``log_space = True`` and
  ``log_coefficients(params, xp) -> (log a, log b)``), ``carry_to_state(carry) -> s``,
  ``state_to_carry(s) -> carry`` and ``readout(params, carry, xp) -> y``.
- A chunkwise-parallel form (for :func:`jaxrnn.chunkwise_scan`): ``chunk_step(params, carry, xs, *,
  starts, valid, initial_carry) -> (carry, ys)`` over one example's chunk ``xs [C, input_size]``;
  ``starts [C]`` marks steps before which the carry returns to ``initial_carry``, ``valid [C]``
  marks real steps (padding leaves the carry unchanged and outputs zeros).

Plain functions become a cell with :func:`cell_from_functions`. A cell of yours joins the ablation
space with :func:`jaxrnn.variants.register`, and every driver, layer and experiment takes it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks

Params = dict[str, jax.Array]


@runtime_checkable
class Cell(Protocol):
    """A recurrent cell: ``init``, ``initial_carry`` and ``step`` for one example.

    The required contract, and the optional methods that buy speed or features, are described in
    :mod:`jaxrnn.cells.base`::

        init(key, input_size) -> params
        initial_carry(params, batch_shape=()) -> carry
        step(params, carry, x [input_size]) -> (carry, y [output_size])

    Optional: ``output_size``; ``input_projection`` + ``recurrent_step`` (hoisting, fused paths);
    ``recurrent_mask_field`` (variational dropout); ``coefficients``/``log_coefficients``,
    ``carry_to_state``, ``state_to_carry``, ``readout`` (:func:`jaxrnn.associative_scan`);
    ``chunk_step`` (:func:`jaxrnn.chunkwise_scan`).
    """

    def init(self, key: jax.Array, input_size: int) -> Any: ...

    def initial_carry(self, params: Any, batch_shape: tuple[int, ...] = ()) -> Any: ...

    def step(self, params: Any, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]: ...


_REQUIRED = ("init", "initial_carry", "step")


def check_cell(where: str, cell: Any) -> None:
    """Raises TypeError unless ``cell`` is a cell instance (not a class) with init/step."""
    if isinstance(cell, type):
        raise TypeError(
            f"{where}: cell is the class {cell.__name__}; expected an instance, e.g. "
            f"{cell.__name__}(hidden_size=128)"
        )
    missing = [name for name in _REQUIRED if not callable(getattr(cell, name, None))]
    if missing:
        raise TypeError(
            f"{where}: cell {type(cell).__name__} lacks {', '.join(missing)}; a cell needs "
            "init(key, input_size), initial_carry(params, batch_shape=()) and "
            "step(params, carry, x) (see jaxrnn.Cell)"
        )


def has_split(cell: Any) -> bool:
    """True when ``cell`` has ``input_projection`` and ``recurrent_step`` (hoisting)."""
    return callable(getattr(cell, "input_projection", None)) and callable(
        getattr(cell, "recurrent_step", None)
    )


def _step_output(cell: Any, params: Any, x_like: jax.ShapeDtypeStruct, where: str):
    """``jax.eval_shape`` of one ``step`` on an input like ``x_like``; a clear error on failure."""

    def one(p, x):
        return cell.step(p, cell.initial_carry(p), x)

    try:
        return jax.eval_shape(one, params, x_like)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
        raise ValueError(
            f"{where}: cell {type(cell).__name__}.step rejected one example x of shape "
            f"{_checks.fmt_shape(x_like.shape)} and dtype {x_like.dtype} (xs's last axis is the "
            f"input size): {type(err).__name__}: {err}"
        ) from err


def check_input_size(where: str, cell: Any, params: Any, size: int, dtype) -> None:
    """Checks that ``cell.step`` accepts one example of ``size`` features (via ``eval_shape``)."""
    _step_output(cell, params, jax.ShapeDtypeStruct((size,), dtype), where)


def output_size(cell: Any, input_size: int | None = None, params: Any = None) -> int:
    """The size of ``y`` in ``step``'s ``(carry, y)``.

    ``cell.output_size`` when the cell has it; otherwise derived with ``jax.eval_shape`` of
    ``step`` from ``params`` or from ``cell.init`` for ``input_size`` (no arrays are allocated).
    """
    size = getattr(cell, "output_size", None)
    if isinstance(size, int | np.integer) and not isinstance(size, bool):
        return int(size)
    where = f"output size of {type(cell).__name__}"
    if params is None:
        if input_size is None:
            raise ValueError(
                f"{where}: the cell has no output_size attribute; pass input_size or params"
            )
        params = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.PRNGKey(0))
        x_like = jax.ShapeDtypeStruct((input_size,), jnp.float32)
    else:
        if input_size is None:
            raise ValueError(f"{where}: pass input_size with params")
        x_like = jax.ShapeDtypeStruct((input_size,), jnp.float32)
    _, y = _step_output(cell, params, x_like, where)
    if len(y.shape) != 1:
        raise ValueError(
            f"{where}: step returned y of shape {_checks.fmt_shape(y.shape)}; layers need a "
            "vector y [output_size] per example"
        )
    return int(y.shape[0])


def get_field(carry: Any, name: str) -> Any:
    """Field ``name`` of a carry: a NamedTuple/dataclass attribute or a dict key."""
    if isinstance(carry, dict):
        return carry[name]
    return getattr(carry, name)


def replace_field(carry: Any, name: str, value: Any) -> Any:
    """A copy of ``carry`` with field ``name`` set to ``value`` (NamedTuple, dataclass or dict)."""
    if isinstance(carry, dict):
        return {**carry, name: value}
    if hasattr(carry, "_replace"):
        return carry._replace(**{name: value})
    return dataclasses.replace(carry, **{name: value})


def recurrent_mask_shape(cell: Any, params: Any) -> tuple[int, ...] | None:
    """Shape, for one example, of the variational-dropout mask of ``cell``; None if undeclared.

    The mask multiplies the carry field named by the cell's ``recurrent_mask_field``.
    """
    name = getattr(cell, "recurrent_mask_field", None)
    if name is None:
        return None
    like = jax.eval_shape(lambda p: cell.initial_carry(p), params)
    try:
        field = get_field(like, name)
    except (KeyError, AttributeError) as err:
        raise ValueError(
            f"{type(cell).__name__}.recurrent_mask_field={name!r} names no field of its carry "
            f"{jax.tree_util.tree_structure(like)}"
        ) from err
    return tuple(field.shape)


def step_with_mask(cell: Any, params: Any, carry: Any, x: jax.Array, h_mask: jax.Array):
    """One ``step`` under a variational-dropout mask (see :func:`recurrent_mask_shape`)."""
    if has_split(cell):
        return cell.recurrent_step(params, carry, cell.input_projection(params, x), h_mask)
    name = cell.recurrent_mask_field
    field = get_field(carry, name)
    return cell.step(params, replace_field(carry, name, field * h_mask.astype(field.dtype)), x)


@dataclasses.dataclass(frozen=True)
class FunctionCell:
    """A cell made of plain functions (see :func:`cell_from_functions`)."""

    init_fn: Callable[[jax.Array, int], Any]
    step_fn: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]
    initial_carry_fn: Callable[..., Any]
    name: str = "FunctionCell"
    recurrent_mask_field: str | None = None

    def init(self, key: jax.Array, input_size: int) -> Any:
        return self.init_fn(key, input_size)

    def initial_carry(self, params: Any, batch_shape: tuple[int, ...] = ()) -> Any:
        return self.initial_carry_fn(params, batch_shape)

    def step(self, params: Any, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]:
        return self.step_fn(params, carry, x)

    def __repr__(self) -> str:
        return f"{self.name}()"


def cell_from_functions(
    init: Callable[[jax.Array, int], Any],
    step: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]],
    initial_carry: Callable[..., Any],
    *,
    name: str = "FunctionCell",
    recurrent_mask_field: str | None = None,
) -> FunctionCell:
    """Makes a cell of three plain functions, for every driver, layer and experiment.

    Args:
      init: ``init(key, input_size) -> params``.
      step: ``step(params, carry, x) -> (carry, y)`` for one example ``x [input_size]``.
      initial_carry: ``initial_carry(params, batch_shape) -> carry`` (zeros, say).
      name: shown in reprs and error messages.
      recurrent_mask_field: the carry field variational dropout multiplies (optional).

    Returns:
      A frozen, hashable :class:`FunctionCell` (usable as a static argument to ``jax.jit``).

    Example::

        def init(key, d):
            return {"W": jax.random.normal(key, (4, d)) * 0.1, "U": jnp.eye(4)}

        def step(p, h, x):
            h = jnp.tanh(p["W"] @ x + p["U"] @ h)
            return h, h

        cell = jaxrnn.cell_from_functions(init, step, lambda p, b=(): jnp.zeros((*b, 4)))
    """
    for arg, fn in (("init", init), ("step", step), ("initial_carry", initial_carry)):
        if not callable(fn):
            raise TypeError(f"cell_from_functions: {arg} must be callable; got {fn!r}")
    return FunctionCell(init, step, initial_carry, name, recurrent_mask_field)


def input_size_of(params: Params) -> int:
    """The input size of a built-in cell's params (their ``w_ih`` is [rows, input_size])."""
    return int(params["w_ih"].shape[-1])


def input_size_method(cell: Any, params: Params) -> int:
    """``cell.input_size(params)`` of the built-in cells: the input size their params were
    initialised for (``w_ih`` is [rows, input_size]). Drivers use it, where a cell has it, to
    name the expected size in their errors. It also checks ``params`` against
    :func:`check_params` (the parameters this cell's ``init`` makes)."""
    return check_params(cell, params)


@functools.lru_cache(maxsize=256)
def _init_shapes_cached(cell: Any, input_size: int) -> Any:
    return _init_shapes(cell, input_size)


def _init_shapes(cell: Any, input_size: int) -> Any:
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    return jax.eval_shape(lambda k: cell.init(k, input_size), key)


def check_params(cell: Any, params: Params, where: str | None = None) -> int:
    """Checks ``params`` against ``jax.eval_shape(cell.init)`` for their input size (from
    ``w_ih``): the same parameter names, each of the same shape. Returns the input size.

    Raises:
        ValueError: naming the missing or unexpected parameters, or the parameter whose shape
            differs with the expected one (params of another cell or size).
    """
    where = where or type(cell).__name__
    w_ih = params.get("w_ih") if isinstance(params, Mapping) else None
    size = int(np.shape(w_ih)[-1]) if w_ih is not None and np.ndim(w_ih) >= 1 else 1
    try:
        like = _init_shapes_cached(cell, size)
    except TypeError:  # an unhashable cell
        like = _init_shapes(cell, size)
    source = f"{type(cell).__name__}(hidden_size={getattr(cell, 'hidden_size', '?')}).init(" \
             f"key, input_size={size})"
    _checks.check_params_like(where, params, like, source)
    return size


_NOT_GIVEN = object()


def check_step_input(cell: Any, params: Params, x: jax.Array, carry: Any = _NOT_GIVEN) -> None:
    """Checks one example's input ``x`` (and ``carry``, if given) for a built-in cell's step."""
    where = f"{type(cell).__name__}.step"
    d = check_params(cell, params, where)
    _checks.check_float(where, "x", x)
    _checks.check_shape(
        where,
        "x",
        x,
        (d,),
        hint="= (input_size,) for one example; use jax.vmap or jaxrnn.scan for batches",
    )
    if carry is not _NOT_GIVEN:  # a None carry is checked too (and rejected)
        check_carry(cell, params, carry, (), where)


def check_carry(cell: Any, params: Params, carry: Any, batch_shape=(), where: str = "") -> None:
    """Checks that ``carry`` matches ``cell.initial_carry(params, batch_shape)``."""
    like = jax.eval_shape(lambda p: cell.initial_carry(p, batch_shape), params)
    _checks.check_tree_like(where or f"{type(cell).__name__}.step", "carry", carry, like)


def matmul(x: jax.Array, w: jax.Array, compute_dtype) -> jax.Array:
    """``x @ w.T`` for one example ``x`` [K] and ``w`` [N, K], accumulated in float32.

    With a ``compute_dtype`` (e.g. bfloat16) both operands are cast to it and the product is
    accumulated and returned in float32.
    """
    if compute_dtype is not None:
        x = x.astype(compute_dtype)
        w = w.astype(compute_dtype)
    out_dtype = jnp.float32 if compute_dtype is not None else None
    return jnp.dot(w, x, preferred_element_type=out_dtype)


def init_linear_params(
    initializer, key: jax.Array, layout: dict[str, tuple[str, tuple[int, ...]]], hidden_size: int,
    dtype,
) -> Params:
    """Initialises parameters from ``{name: (role, shape)}`` with one key per parameter."""
    keys = jax.random.split(key, len(layout))
    return {
        name: initializer(k, role, shape, hidden_size, dtype)
        for k, (name, (role, shape)) in zip(keys, layout.items(), strict=True)
    }
