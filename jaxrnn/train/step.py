"""Jitted train and eval steps over a user loss, and on-device evaluation sums.

The steps know nothing about models: the user writes a pure loss over any params pytree
and any carry, and these functions add differentiation, the optax update, key handling and
the bookkeeping metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn.train.state import TrainState

__all__ = ["evaluate", "make_eval_step", "make_train_step"]

PyTree = Any
Metrics = dict[str, jax.Array]
LossFn = Callable[[PyTree, PyTree, PyTree, jax.Array], tuple[jax.Array, tuple[PyTree, Metrics]]]
EvalFn = Callable[[PyTree, PyTree, PyTree], tuple[PyTree, Metrics]]
TrainStep = Callable[[TrainState, PyTree], tuple[TrainState, Metrics]]
EvalStep = Callable[[PyTree, PyTree, PyTree], tuple[PyTree, Metrics]]


def make_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    jit: bool = True,
    donate: bool = True,
) -> TrainStep:
    """Builds ``train_step(state, batch) -> (new_state, metrics)``.

    One step:

        step_key           = jax.random.fold_in(state.key, state.step)
        (loss, (carry, m)), grads = value_and_grad(loss_fn, has_aux=True)(
                                 state.params, state.carry, batch, step_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params             = optax.apply_updates(state.params, updates)
        new_state          = TrainState(step + 1, params, opt_state, state.key,
                                        stop_gradient(carry))
        metrics            = {"loss": loss, **m, "objective": loss,
                              "grad_norm": optax.tree.norm(grads)}

    ``metrics["loss"]`` is what the loop logs and turns into perplexity: the objective by
    default, but ``loss_fn`` may report its own ``"loss"`` when the objective is scaled
    differently (Zaremba et al. differentiate the loss summed over the ``bptt`` time steps
    and report the per-token mean); the objective itself is always ``"objective"``.
    ``grad_norm`` is measured before clipping. The key depends only on ``(key, step)``, so
    a resumed run draws the same dropout masks as an uninterrupted one.

    Args:
        loss_fn: ``loss_fn(params, carry, batch, key) -> (loss, (new_carry, metrics))``
            with a scalar ``loss`` (the objective) and ``metrics`` a dict of scalars (may
            be empty; a ``"loss"`` entry overrides the reported loss).
            ``new_carry`` must have the structure, shapes and dtypes of ``carry``.
        optimizer: an optax transformation, e.g. from :func:`make_optimizer`.
        jit: compile with ``jax.jit`` (compiled once per batch shape).
        donate: donate the input state's buffers to the output (halves peak memory); the
            ``state`` passed in must not be used after the call.

    Returns:
        The step function.
    """

    def train_step(state: TrainState, batch: PyTree) -> tuple[TrainState, Metrics]:
        step_key = jax.random.fold_in(state.key, state.step)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (new_carry, user_metrics)), grads = grad_fn(
            state.params, state.carry, batch, step_key
        )
        if not isinstance(user_metrics, Mapping):
            raise TypeError(
                f"train_step: loss_fn must return (loss, (new_carry, metrics)) with metrics "
                f"a dict of scalars; got metrics of type {type(user_metrics).__name__}"
            )
        if jnp.ndim(loss) != 0:
            raise ValueError(
                f"train_step: loss_fn returned loss of shape {jnp.shape(loss)}; expected a "
                "scalar ()"
            )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # The user's "loss" metric, when given, is what gets logged (e.g. per-token nats while
        # the objective is a sum over time steps); the objective is always kept as "objective".
        metrics = {"loss": loss, **user_metrics, "objective": loss}
        metrics["grad_norm"] = optax.tree.norm(grads)
        new_state = TrainState(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            key=state.key,
            carry=jax.lax.stop_gradient(new_carry),
        )
        return new_state, metrics

    if jit:
        return jax.jit(train_step, donate_argnums=(0,) if donate else ())
    return train_step


def make_eval_step(eval_fn: EvalFn, jit: bool = True) -> EvalStep:
    """Builds ``eval_step(params, carry, batch) -> (new_carry, metrics)``.

    Args:
        eval_fn: ``eval_fn(params, carry, batch) -> (new_carry, metrics)`` where
            ``metrics`` is a dict of scalars meant to be *summed* over batches, e.g.
            ``{"loss_sum": sum of token losses, "count": number of tokens}``.
        jit: compile with ``jax.jit``.

    Returns:
        The eval step (no donation: ``params`` stay usable).
    """
    return jax.jit(eval_fn) if jit else eval_fn


@jax.jit
def _add(total: Metrics, metrics: Metrics) -> Metrics:
    return jax.tree.map(jnp.add, total, metrics)


def evaluate(
    eval_step: EvalStep,
    params: PyTree,
    carry: PyTree,
    batches: Iterable[PyTree],
) -> dict[str, float | int]:
    """Runs ``eval_step`` over ``batches``, threading the carry, and sums the metrics.

    The sums stay on the device and come to the host once, at the end, so there is no
    host synchronisation per batch. Each metric is summed in its own dtype (e.g. float32
    ``loss_sum``, int32 ``count``).

    Args:
        eval_step: from :func:`make_eval_step`.
        params: model parameters.
        carry: initial carry for the first batch (e.g. zeros).
        batches: the evaluation batches, in order.

    Returns:
        ``{name: sum over batches}`` as Python floats (ints for integer metrics).

    Raises:
        ValueError: if ``batches`` is empty.
    """
    total: Metrics | None = None
    for batch in batches:
        carry, metrics = eval_step(params, carry, batch)
        metrics = dict(metrics)
        total = metrics if total is None else _add(total, metrics)
    if total is None:
        raise ValueError("evaluate: batches is empty; expected at least one batch")
    host = jax.device_get(total)
    return {
        name: int(value) if np.issubdtype(np.asarray(value).dtype, np.integer) else float(value)
        for name, value in host.items()
    }
