"""Drivers: run any cell over a batch of sequences with ``jax.lax.scan``.

:func:`scan` works with any object that follows the cell protocol (:mod:`jaxrnn.cells.base`);
it knows nothing about LSTMs or GRUs. Semantics, for each sequence b of the batch:

- ``lengths[b] = L``: steps ``t >= L`` are padding. Their outputs are exactly zero and they do not
  change the carry, so the final carry is the one after step ``L - 1`` (``L = 0`` returns the
  initial carry). This is what PyTorch's ``pack_padded_sequence`` followed by
  ``pad_packed_sequence(total_length=T)`` gives. The values in the padding never matter: NaN
  or Inf there leave the outputs exact and the gradients finite (padded inputs are replaced by
  zeros with a select before any computation). Concrete lengths outside [0, T] are an error;
  under ``jax.jit``, where their values are unknown, lengths beyond T act as T and negative
  ones as 0, on every strategy.
- ``reverse=True``: the valid part ``x_0 .. x_{L-1}`` is processed from ``x_{L-1}`` down to
  ``x_0`` and the output for ``x_t`` is written at position ``t``; padding stays at the end.
- ``resets[b, t] = True``: ``x_t`` starts a new segment (an episode or a document packed into one
  stream), so the carry returns to the initial carry before step t. With ``reverse=True`` the
  same boundary is honoured from the other side (the carry resets before ``x_{t-1}``).

These strategies compute the same function (tests check it on the same weights):

- ``"in_loop"``: ``cell.step`` at each step (input projection inside the loop).
- ``"hoisted"``: the input projection of all time steps first, as one large matmul, then the
  sequential ``cell.recurrent_step`` only.

- ``"fused"``: for a plain LSTM or a reset-after GRU, the hoisted projection plus a hand-written
  backward pass (:mod:`jaxrnn.fused`) whose backward loop does only the sequential work and
  computes the weight gradients afterwards as large matmuls. Reverse-mode AD only: ``jax.jvp``
  needs "in_loop" or "hoisted". Other cells, or ``resets``, fall back to "hoisted".
- ``"cudnn"``: on an NVIDIA GPU, a plain LSTM through cuDNN (:mod:`jaxrnn.cudnn`, via
  ``jax.experimental.rnn``). Opt-in and not verified on a GPU by this project's tests (the
  packing is tested on a CPU against JAX's reference); elsewhere, or with ``h_mask``, it runs
  "fused".

``"auto"`` uses "fused" where it applies, except for float32 batches above
:data:`CPU_FUSED_MAX_BATCH` (128 for the LSTM, 32 for the GRU) on a CPU; otherwise, on a CPU,
the projection stays in the loop (measured on a 2-core CPU, hoisting alone was not faster) and
GPUs and TPUs hoist it.
"in_loop" and "hoisted" support reverse- and forward-mode AD (``jax.grad``, ``jax.jvp``).

``remat=k`` trades compute for memory (gradient checkpointing, Chen et al. 2016, "Training deep
nets with sublinear memory cost"): the time loop becomes an outer ``jax.lax.scan`` over chunks
of k steps whose body, an inner scan over the chunk, is wrapped in ``jax.checkpoint``. The
backward pass keeps only the carries at chunk boundaries and recomputes each chunk's internals,
so activation memory is O(T/k + k) carries instead of O(T) per-step residuals (k near sqrt(T)
is the classic choice), for about one extra forward pass of compute. The compiled program has
two loops whatever T is (plus one tail call when k does not divide T), so compile time does not
grow with T. Results are the same function as without remat. It needs plain autodiff, so the
fused path (whose custom backward keeps every step's gates to compute the weight gradients as
large matmuls at the end, O(T) by design) is not used: "fused" runs "hoisted", and "auto" runs
"in_loop" on a CPU and "hoisted" elsewhere (the same choice as for cells that cannot fuse).
With "hoisted" the input projection is hoisted per chunk, inside the checkpoint, so it is not
kept for all T steps either.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks, cudnn, fused
from jaxrnn.cells import base
from jaxrnn.cells.base import check_carry

Strategy = Literal["auto", "in_loop", "hoisted", "fused", "cudnn"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)


# On a CPU, "auto" fuses a float32 cell only while the batch is at most this large (by cell
# class). Measured on 2-core CPUs (benchmarks/RESULTS.md), training step, fused vs in_loop:
# - Intel Xeon (session 2): LSTM (20, 35, 200) 10.4 vs 17.0 ms, (20, 35, 650) 71 vs 122 ms,
#   (8, 4096, 256) 1,056 vs 1,814 ms: fused wins at small batches, where the per-step
#   weight-gradient matmuls of plain autodiff are thin; at (64, 100, 256) they tied (136 vs
#   131 ms; GRU 131 vs 138), and at (256, 100, 512) in_loop won (1,280 vs 1,510 ms; GRU 1,289
#   vs 1,502), streaming the hoisted projection through memory costing more than thin matmuls
#   save. (An earlier rule on the projection's size in bytes sent the long (8, 4096, 256) case
#   to in_loop, 1.7x slower.)
# - AMD EPYC (session 6), after the fused LSTM's backward gained a row-major copy of dz^T for
#   its weight gradients (jaxrnn/_matmul.py): LSTM (64, 100, 256) 201 vs 254 ms, (128, 100,
#   256) 330 vs 347, (256, 100, 512) 2,327 vs 2,402; GRU (64, 100, 256) 154 vs 145, (256, 100,
#   512) 1,830 vs 1,835 (one process, alternating, glibc's default allocator).
# So the LSTM fuses up to batch 128; at 256 the two machines disagree and in_loop stays.
# Re-measured on the AMD EPYC in session 7 (fused inference now level with in_loop's or faster):
# training, fused vs in_loop, glibc's default allocator: LSTM (256, 100, 512) 2,359 vs 2,434 ms,
# GRU (256, 100, 512) 1,755 vs 1,772, GRU (64, 100, 256) 152 vs 150 — within 4% either way, as
# under jaxrnn.train.host's allocator settings, so the limits stay.
CPU_FUSED_MAX_BATCH = {"LSTM": 128, "GRU": 32}
# With a reduced-precision ``compute_dtype`` (bfloat16) the batch limit does not apply: the fused
# path keeps every matmul in the row-major [M, K] x [K, N] form that XLA:CPU hands to its bf16
# kernels (AMX on the CPU measured), and it won at every batch there: LSTM training step, fused
# vs in_loop, both bf16: (64, 100, 256) 105 vs 162 ms, (256, 100, 512) 1,143 vs 1,670 ms.


def resolve_strategy(
    strategy: Strategy,
    cell=None,
    resets=None,
    xs_shape: tuple[int, ...] | None = None,
    remat: bool = False,
    time_major: bool = False,
) -> Literal["in_loop", "hoisted", "fused", "cudnn"]:
    """Maps a requested strategy to the one that runs for this cell and these arguments.

    "fused" runs the custom-VJP path of :mod:`jaxrnn.fused` for a plain LSTM or a reset-after
    GRU without ``resets`` and without ``remat``; other cells, ``resets`` or ``remat`` fall back
    to "hoisted" (rematerialisation needs plain autodiff, see the module docstring). "auto" picks
    "fused" where it applies, except on a CPU when the batch (from ``xs_shape``, [B, T, D], or
    [T, B, D] with ``time_major``) exceeds the cell's :data:`CPU_FUSED_MAX_BATCH` and it computes
    in float32 (a cell with ``compute_dtype``, e.g. bfloat16, fuses at any batch); otherwise
    "in_loop" on a CPU (hoisting alone was not faster there) and "hoisted" on GPUs and TPUs.
    "cudnn" runs cuDNN (:mod:`jaxrnn.cudnn`) for a plain LSTM on a GPU and is "fused" otherwise
    (:func:`scan` also sends it to "fused" when ``h_mask`` is given).
    """
    if strategy not in ("auto", "in_loop", "hoisted", "fused", "cudnn"):
        raise ValueError(
            f"strategy={strategy!r}; expected 'auto', 'in_loop', 'hoisted', 'fused' or 'cudnn'"
        )
    if cell is not None and not base.has_split(cell):
        if strategy == "hoisted":
            raise ValueError(
                f"strategy='hoisted' needs a cell with input_projection and recurrent_step; "
                f"{type(cell).__name__} has only step: use strategy='in_loop' or 'auto'"
            )
        return "in_loop"
    fusable = cell is not None and resets is None and not remat and fused.supports(cell)
    if strategy == "cudnn":
        if fusable and cudnn.supports(cell) and cudnn.available():
            return "cudnn"
        strategy = "fused"
    if strategy == "fused":
        return "fused" if fusable else "hoisted"
    if strategy == "auto":
        cpu = jax.default_backend() == "cpu"
        batch = None if xs_shape is None else xs_shape[1 if time_major else 0]
        wide = fusable and batch is not None and batch > CPU_FUSED_MAX_BATCH[type(cell).__name__]
        if fusable and not (cpu and wide and getattr(cell, "compute_dtype", None) is None):
            return "fused"
        return "in_loop" if cpu else "hoisted"
    return strategy


def check_lengths(where: str, lengths: Any, batch: int, steps: int) -> None:
    """Checks shape and dtype of ``lengths``, and its values when they are concrete.

    Under ``jax.jit`` the values are not known; lengths beyond T then act as T and negative
    lengths as 0 (documented behaviour, no error).
    """
    _checks.check_int_array(where, "lengths", lengths, (batch,))
    if _checks.is_concrete(lengths):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > steps):
            raise ValueError(
                f"{where}: lengths must lie in [0, T] = [0, {steps}]; "
                f"got values in [{values.min()}, {values.max()}]"
            )


def clamp_lengths(lengths: jax.Array, steps: int) -> jax.Array:
    """``lengths`` clipped to [0, T]: under ``jax.jit`` (values unknown when checked) lengths
    beyond T act as T and negative ones as 0, on every driver and strategy."""
    return jnp.clip(jnp.asarray(lengths), 0, steps)


def zero_padding(xs: jax.Array, lengths: jax.Array, time_major: bool = False) -> jax.Array:
    """``xs`` with every step at or past its sequence's length replaced by zeros.

    A select, not a multiplication by a mask: padding holding NaN or Inf then never reaches the
    outputs or the gradients (a padded step's value is discarded by the driver, but its
    derivatives would still be evaluated at the padded input, and 0 * NaN is NaN).
    """
    steps = xs.shape[0 if time_major else 1]
    valid = jnp.arange(steps)[None, :] < lengths[:, None]  # [B, T]
    if time_major:
        valid = valid.T
    return jnp.where(valid[..., None], xs, jnp.zeros((), xs.dtype))


def check_carry_dtypes(where: str, cell: Any, params: Any, carry: Any, batch: int) -> None:
    """Raises TypeError unless every leaf of ``carry`` has the dtype of the cell's own initial
    carry: every strategy then computes in the same dtypes (none casts a carry silently)."""
    like = jax.eval_shape(lambda p: cell.initial_carry(p, (batch,)), params)
    for (path, got), want in zip(
        jax.tree_util.tree_leaves_with_path(carry), jax.tree.leaves(like), strict=True
    ):
        if jnp.dtype(got.dtype) != jnp.dtype(want.dtype):
            raise TypeError(
                f"{where}: carry{jax.tree_util.keystr(path)} has dtype {got.dtype}; expected "
                f"{want.dtype}, the dtype of cell.initial_carry(params) (cast the carry with "
                f".astype({want.dtype}), or initialise the cell with another param_dtype)"
            )


def check_remat(where: str, remat: Any) -> None:
    """Raises ValueError unless ``remat`` is None or a positive integer (a chunk length)."""
    if remat is None:
        return
    if not isinstance(remat, int | np.integer) or isinstance(remat, bool) or remat < 1:
        raise ValueError(
            f"{where}: remat={remat!r}; expected None (no rematerialisation) or a positive "
            "integer, the number of time steps per checkpointed chunk (e.g. 64)"
        )


def check_scan_inputs(where, cell, params, xs, carry, lengths, resets, time_major):
    """Checks a driver's arguments; returns ``(carry, resets, batch, steps)``.

    ``carry`` is filled with the cell's zeros when None; ``resets`` comes back batch-major.
    """
    base.check_cell(where, cell)
    _checks.check_float(where, "xs", xs)
    layout = "[T, B, input_size]" if time_major else "[B, T, input_size]"
    if np.ndim(xs) != 3:
        raise ValueError(f"{where}: xs has shape {tuple(np.shape(xs))}; expected {layout}")
    if callable(getattr(cell, "input_size", None)):
        _checks.check_shape(where, "xs", xs, (None, None, cell.input_size(params)), f"= {layout}")
    else:  # a cell without input_size: one traced step says whether it takes this input
        base.check_input_size(where, cell, params, xs.shape[-1], xs.dtype)
    steps, batch = xs.shape[:2] if time_major else xs.shape[1::-1]
    if carry is None:
        carry = cell.initial_carry(params, (batch,))
    else:
        check_carry(cell, params, carry, (batch,), where)
    if lengths is not None:
        check_lengths(where, lengths, batch, steps)
    if resets is not None:
        _checks.check_bool_array(
            where, "resets", resets, (steps, batch) if time_major else (batch, steps)
        )
        if time_major:
            resets = resets.T
    return carry, resets, batch, steps


def reverse_index(steps: int, length: jax.Array | None) -> jax.Array:
    """Permutation reversing the valid part [0, length) and fixing the padding (an involution)."""
    t = jnp.arange(steps)
    if length is None:
        return steps - 1 - t
    return jnp.where(t < length, length - 1 - t, t)


def reverse_sequence(xs: jax.Array, resets: jax.Array | None, length: jax.Array | None):
    """One sequence's valid part reversed: ``(xs[idx], resets in that order, idx)``.

    A segment that starts at x_t going forwards starts, going backwards, before x_{t-1}, so
    the reset flags move one step before they are permuted. ``ys[idx]`` undoes the order.
    """
    idx = reverse_index(xs.shape[0], length)
    if resets is not None:
        resets = jnp.concatenate([resets[1:], jnp.zeros((1,), bool)])[idx]
    return xs[idx], resets, idx


def _scan_one(
    cell, params, xs, carry0, length, resets, h_mask, *, reverse, unroll, hoisted, remat=None
):
    """One sequence: xs [T, D], carry0 a carry for one example, length a scalar or None."""
    steps = xs.shape[0]
    valid = None if length is None else jnp.arange(steps) < length
    if reverse:
        xs, resets, idx = reverse_sequence(xs, resets, length)

    if hoisted:

        def project(xs):
            return jax.vmap(cell.input_projection, in_axes=(None, 0))(params, xs)

        def advance(carry, x):
            return cell.recurrent_step(params, carry, x, h_mask)
    else:
        project = None
        if h_mask is None:

            def advance(carry, x):
                return cell.step(params, carry, x)
        else:

            def advance(carry, x):
                return base.step_with_mask(cell, params, carry, x, h_mask)

    def body(carry, inp):
        x, ok, reset = inp
        if reset is not None:
            carry = jax.tree.map(lambda c0, c: jnp.where(reset, c0, c), carry0, carry)
        new_carry, y = advance(carry, x)
        if ok is not None:
            new_carry = jax.tree.map(lambda n, c: jnp.where(ok, n, c), new_carry, carry)
            y = jnp.where(ok, y, jnp.zeros_like(y))
        return new_carry, y

    if remat is None:
        inputs = xs if project is None else project(xs)
        final, ys = jax.lax.scan(body, carry0, (inputs, valid, resets), unroll=unroll)
    else:
        final, ys = _remat_scan(body, project, carry0, (xs, valid, resets), remat, unroll)
    if reverse:
        ys = ys[idx]
    return final, ys


def _remat_scan(body, project, carry, seq, chunk, unroll):
    """``lax.scan(body, carry, seq)`` as checkpointed chunks of ``chunk`` steps.

    ``seq`` is a tuple of per-step arrays [T, ...] (None entries allowed); ``project``, when not
    None, maps the chunk's raw inputs [k, D] to what ``body`` consumes (the hoisted projection,
    recomputed per chunk in the backward pass). The first ``T // chunk`` chunks run under an
    outer scan; a remainder of ``T % chunk`` steps runs as one more checkpointed chunk, so no
    padded steps are added and the step semantics stay those of ``body``.
    """

    def run_chunk(carry, part):
        x, ok, reset = part
        if project is not None:
            x = project(x)
        return jax.lax.scan(body, carry, (x, ok, reset), unroll=unroll)

    steps, chunk = seq[0].shape[0], int(chunk)
    full, rest = divmod(steps, chunk)
    outputs = []
    if full:
        head = jax.tree.map(
            lambda a: a[: full * chunk].reshape(full, chunk, *a.shape[1:]), seq
        )
        # As the body of a scan, the recomputation cannot be merged with the forward pass by
        # CSE anyway, so prevent_cse's extra barriers are not needed (jax.checkpoint's docs).
        body_chunk = jax.checkpoint(run_chunk, prevent_cse=False)
        carry, ys = jax.lax.scan(body_chunk, carry, head)
        outputs.append(ys.reshape(full * chunk, *ys.shape[2:]))
    if rest or not full:
        tail = jax.tree.map(lambda a: a[full * chunk :], seq)
        carry, ys = jax.checkpoint(run_chunk)(carry, tail)
        outputs.append(ys)
    return carry, outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs)


def scan(
    cell: Any,
    params: Any,
    xs: jax.Array,
    carry: Any = None,
    *,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reverse: bool = False,
    unroll: int = 1,
    time_major: bool = False,
    strategy: Strategy = "auto",
    h_mask: jax.Array | None = None,
    remat: int | None = None,
) -> tuple[jax.Array, Any]:
    """Runs ``cell`` over a batch of sequences.

    Args:
      cell: any object with the cell protocol (``jaxrnn.LSTM(...)``, ``jaxrnn.GRU(...)``, ...).
      params: the cell's params, from ``cell.init``.
      xs: float inputs [B, T, D] (or [T, B, D] with ``time_major=True``).
      carry: initial carry with batch shape (B,), e.g. ``cell.initial_carry(params, (B,))``;
        zeros when None.
      lengths: int [B], valid steps of each sequence (see the module docstring).
      resets: bool [B, T] (or [T, B] time-major): True where a step starts a new segment.
      reverse: process each sequence's valid part backwards.
      unroll: ``jax.lax.scan``'s unroll factor (of the inner, per-chunk scan with ``remat``).
      time_major: layout of ``xs``, ``resets`` and the returned outputs.
      strategy: "auto", "in_loop", "hoisted", "fused" or "cudnn" (see the module docstring).
      h_mask: optional float [B, H] multiplying ``h_{t-1}`` where it enters the recurrent
        matmuls at every step (variational dropout, Gal & Ghahramani 2016).
      remat: None, or a chunk length k >= 1: gradient checkpointing over chunks of k steps
        (see the module docstring); the backward pass stores O(T/k + k) carries instead of
        O(T) residuals and recomputes each chunk's forward. Same results; "fused" and an
        "auto" that would fuse run "hoisted" / "in_loop" instead. Any k works (T need not be
        divisible by k; k >= T gives a single checkpointed chunk).

    Returns:
      ``(ys, final_carry)``: ys [B, T, output_size] (or [T, B, ...]); final_carry at each
      sequence's last valid step.
    """
    where = "jaxrnn.scan"
    check_remat(where, remat)
    carry, resets, batch, _ = check_scan_inputs(
        where, cell, params, xs, carry, lengths, resets, time_major
    )
    if h_mask is not None:
        mask_shape = base.recurrent_mask_shape(cell, params)
        if mask_shape is None:
            raise ValueError(
                f"{where}: h_mask needs a cell that declares recurrent_mask_field (the carry "
                f"field the mask multiplies); {type(cell).__name__} declares none"
            )
        _checks.check_shape(where, "h_mask", h_mask, (batch, *mask_shape))
    chosen = resolve_strategy(strategy, cell, resets, xs.shape, remat=remat is not None,
                              time_major=time_major)
    if chosen == "cudnn" and h_mask is not None:
        chosen = "fused"  # cuDNN has no per-sequence mask on h_{t-1}
    check_carry_dtypes(where, cell, params, carry, batch)
    if lengths is not None:
        lengths = clamp_lengths(lengths, xs.shape[0 if time_major else 1])
        xs = zero_padding(xs, lengths, time_major)
    if chosen == "cudnn":
        return _scan_whole_batch(
            lambda x: cudnn.cudnn_scan(cell, params, x, carry, lengths),
            xs, lengths, reverse, time_major,
        )
    if chosen == "fused":
        def run_fused(x):
            valid = None
            if lengths is not None:
                valid = jnp.arange(x.shape[1])[:, None] < lengths[None, :]
            ys, final = fused.fused_scan(
                cell, params, jnp.swapaxes(x, 0, 1), carry, valid, h_mask, unroll
            )
            return jnp.swapaxes(ys, 0, 1), final

        return _scan_whole_batch(run_fused, xs, lengths, reverse, time_major)
    hoisted = chosen == "hoisted"

    if time_major:
        xs = jnp.swapaxes(xs, 0, 1)

    def one(x, c, length, reset, mask):
        return _scan_one(
            cell, params, x, c, length, reset, mask,
            reverse=reverse, unroll=unroll, hoisted=hoisted, remat=remat,
        )

    axes = (0, 0, None if lengths is None else 0, None if resets is None else 0,
            None if h_mask is None else 0)
    final, ys = jax.vmap(one, in_axes=axes)(xs, carry, lengths, resets, h_mask)
    if time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    return ys, final


def _scan_whole_batch(run, xs, lengths, reverse, time_major):
    """The fused and cuDNN paths, which take the whole batch at once: ``run`` maps batch-major
    xs [B, T, D] to (ys [B, T, H], final carry) forward in time. Reversal of each sequence's
    valid part is a gather before and after."""
    if time_major:
        xs = jnp.swapaxes(xs, 0, 1)
    idx = None
    if reverse:
        if lengths is None:
            xs = xs[:, ::-1]
        else:
            idx = jax.vmap(reverse_index, in_axes=(None, 0))(xs.shape[1], lengths)
            xs = jnp.take_along_axis(xs, idx[:, :, None], axis=1)
    ys, final = run(xs)
    if reverse:
        ys = ys[:, ::-1] if idx is None else jnp.take_along_axis(ys, idx[:, :, None], axis=1)
    if time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    return ys, final
