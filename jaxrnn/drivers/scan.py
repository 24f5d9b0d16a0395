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
  backward pass (:mod:`jaxrnn.kernels.fused`) whose backward loop does only the sequential work and
  computes the weight gradients afterwards as large matmuls. Reverse-mode AD only: ``jax.jvp``
  needs "in_loop" or "hoisted". Other cells, or ``resets``, fall back to "hoisted".
- ``"cudnn"``: on an NVIDIA GPU, a plain LSTM through cuDNN (:mod:`jaxrnn.kernels.cudnn`, via
  ``jax.experimental.rnn``). Opt-in, CUDA only, resolved when tracing (a CUDA GPU must be
  present then; :mod:`jaxrnn.drivers.strategy`); elsewhere, or with ``h_mask``, it runs "fused".

``"auto"`` uses "fused" where it applies, except, for a forward pass, float32 batches above the
platform's limit (on a CPU: 128 for the LSTM, 32 for the GRU); otherwise, on a CPU, the
forward pass keeps the projection in the loop and GPUs and TPUs hoist it. A differentiated scan
(a training step) fuses a GRU at any batch on every platform; the other choices are the
forward pass's. The choice is made per lowering platform from the table in :mod:`jaxrnn.tuning`
(:mod:`jaxrnn.drivers.strategy`), so a module exported for a GPU or TPU from a CPU carries the
GPU's or TPU's choice.
"in_loop" and "hoisted" support reverse- and forward-mode AD (``jax.grad``, ``jax.jvp``);
forward-mode AD through "auto" reaches the fused kernel where it fuses and needs one of them.

``remat=k`` trades compute for memory (gradient checkpointing, Chen et al. 2016, "Training deep
nets with sublinear memory cost"): the time loop becomes an outer ``jax.lax.scan`` over chunks
of k steps whose body, an inner scan over the chunk, is wrapped in ``jax.checkpoint``. The
backward pass keeps only the carries at chunk boundaries and recomputes each chunk's internals,
so activation memory is O(T/k + k) carries instead of O(T) per-step residuals (k near sqrt(T)
is the classic choice), for about one extra forward pass of compute. The compiled program has
two loops whatever T is (plus one tail call when k does not divide T), so compile time does not
grow with T. Results are the same function as without remat. It needs plain autodiff, so the
fused path (whose custom backward keeps every step's gates to compute the weight gradients as
large matmuls at the end, O(T) by design) is not used: "fused" runs "hoisted", and "auto" makes
the choice of the cells that cannot fuse.
With "hoisted" the input projection is hoisted per chunk, inside the checkpoint, so it is not
kept for all T steps either.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn.cells import base
from jaxrnn.drivers.inputs import (
    check_carry_dtypes,
    check_remat,
    check_scan_inputs,
    clamp_lengths,
    reverse_index,
    reverse_sequence,
    zero_padding,
)
from jaxrnn.drivers.strategy import Strategy, resolve_strategy
from jaxrnn.kernels import cudnn, fused
from jaxrnn.tuning import per_platform


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

    def body(prev, inp):
        x, ok, reset = inp
        carry = prev
        if reset is not None:
            carry = jax.tree.map(lambda c0, c: jnp.where(reset, c0, c), carry0, carry)
        new_carry, y = advance(carry, x)
        if ok is not None:  # a padding step leaves the carry as it was, a reset flag included
            new_carry = jax.tree.map(lambda n, c: jnp.where(ok, n, c), new_carry, prev)
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
    check_carry_dtypes(where, cell, params, carry, batch)
    if lengths is not None:
        lengths = clamp_lengths(lengths, xs.shape[0 if time_major else 1])
        xs = zero_padding(xs, lengths, time_major)

    def run(chosen, params, xs, carry, lengths, resets, h_mask):
        if chosen == "cudnn" and h_mask is None:  # cuDNN has no per-sequence mask on h_{t-1}
            return _scan_whole_batch(
                lambda x: cudnn.cudnn_scan(cell, params, x, carry, lengths),
                xs, lengths, reverse, time_major,
            )
        if chosen in ("cudnn", "fused"):
            def run_fused(x):
                valid = None
                if lengths is not None:
                    valid = jnp.arange(x.shape[1])[:, None] < lengths[None, :]
                try:
                    ys, final = fused.fused_scan(
                        cell, params, jnp.swapaxes(x, 0, 1), carry, valid, h_mask, unroll
                    )
                except TypeError as err:
                    if "forward-mode" not in str(err):
                        raise
                    raise TypeError(
                        f"{where}: strategy={strategy!r} runs the fused kernel here, whose "
                        f"backward pass is hand-written (jax.custom_vjp), so forward-mode AD "
                        f"(jax.jvp, jax.jacfwd, jax.hessian) cannot go through it; pass "
                        f"strategy='in_loop' (or 'hoisted') to differentiate forwards"
                    ) from err
                return jnp.swapaxes(ys, 0, 1), final

            return _scan_whole_batch(run_fused, xs, lengths, reverse, time_major)
        x = jnp.swapaxes(xs, 0, 1) if time_major else xs

        def one(x, c, length, reset, mask):
            return _scan_one(
                cell, params, x, c, length, reset, mask,
                reverse=reverse, unroll=unroll, hoisted=chosen == "hoisted", remat=remat,
            )

        axes = (0, 0, None if lengths is None else 0, None if resets is None else 0,
                None if h_mask is None else 0)
        final, ys = jax.vmap(one, in_axes=axes)(x, carry, lengths, resets, h_mask)
        if time_major:
            ys = jnp.swapaxes(ys, 0, 1)
        return ys, final

    # One runner per distinct strategy, so platforms that choose alike share one branch.
    runners: dict[str, Any] = {}

    def choices(differentiated):
        def for_platform(platform):
            chosen = resolve_strategy(strategy, cell, resets, xs.shape, remat=remat is not None,
                                      time_major=time_major, platform=platform,
                                      differentiated=differentiated)
            return runners.setdefault(chosen, functools.partial(run, chosen))

        return for_platform

    def out_shape(params, xs, carry, *_):
        x = jax.ShapeDtypeStruct((xs.shape[-1],), xs.dtype)
        c = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), carry)
        y = jax.eval_shape(cell.step, params, c, x)[1]
        lead = (xs.shape[0], xs.shape[1])
        return (jax.ShapeDtypeStruct((*lead, *y.shape), y.dtype),
                jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), carry))

    # Reverse mode linearizes the variants in the initial carry too: its cotangent is free, and
    # the scan is then linearized in one pass.
    return per_platform(choices(False), params, xs, carry, lengths, resets, h_mask,
                        out_shape=out_shape, make_grad=choices(True), always_differentiate=(2,))


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
