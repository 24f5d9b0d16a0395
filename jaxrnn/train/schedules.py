"""Learning-rate schedules and optimizer construction by name.

:func:`epoch_decay` is the schedule of Zaremba et al. (2014), "Recurrent Neural Network
Regularization": constant for the first ``decay_after`` epochs, then multiplied by ``decay``
after every epoch. :func:`make_optimizer` builds ``chain(clip_by_global_norm, <optimizer>)``
from a name, so experiments can take the optimizer as a command-line string.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["OPTIMIZERS", "epoch_decay", "lr_metric", "make_optimizer"]

# Exponents below this come from a float64 table rounded once to float32, so the schedule
# equals Zaremba's Python-float learning rate cast to float32 exactly; beyond it lax.pow.
_TABLE_SIZE = 256


def _check_rate(where: str, name: str, value) -> None:
    """A learning rate: a finite number > 0 (a negative one ascends the loss)."""
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool)
    if not number or not math.isfinite(value) or not value > 0:
        raise ValueError(f"{where}: {name} must be a finite number > 0; got {value!r}")


def epoch_decay(
    base_lr: float,
    decay: float,
    decay_after: int,
    steps_per_epoch: int,
) -> Callable[[jax.Array | int], jax.Array]:
    """Zaremba et al. (2014)'s per-epoch exponential decay, as an optax schedule.

        epoch = step // steps_per_epoch                      (0-based)
        lr    = base_lr * decay ** max(epoch + 1 - decay_after, 0)

    which is the reference code's ``lr_decay = config.lr_decay ** max(i + 1 -
    config.max_epoch, 0.0)``. With the small preset (``base_lr=1, decay=0.5,
    decay_after=4``) epochs 1-4 (1-based) use 1.0, epoch 5 uses 0.5, epoch 6 0.25, ...

    Args:
        base_lr: learning rate before any decay.
        decay: multiplicative factor per epoch after ``decay_after``, in ``(0, 1]``.
        decay_after: number of epochs (``max_epoch`` in the reference) at ``base_lr``.
        steps_per_epoch: optimizer steps per epoch (TBPTT windows per epoch).

    Returns:
        ``schedule(step) -> float32 scalar``; traceable, works under
        ``jax_numpy_dtype_promotion="strict"``. For up to 256 decayed epochs the value is
        the float64 result rounded once to float32.

    Raises:
        ValueError: on a non-positive ``steps_per_epoch``, negative ``decay_after``,
            ``decay`` outside ``(0, 1]``, or a ``base_lr`` that is not a finite number > 0.
    """
    if not isinstance(steps_per_epoch, int | np.integer) or steps_per_epoch < 1:
        raise ValueError(
            f"epoch_decay: steps_per_epoch must be a positive int; got {steps_per_epoch!r}"
        )
    if not isinstance(decay_after, int | np.integer) or decay_after < 0:
        raise ValueError(
            f"epoch_decay: decay_after must be an int >= 0; got {decay_after!r}"
        )
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"epoch_decay: decay must be in (0, 1]; got {decay!r}")
    _check_rate("epoch_decay", "base_lr", base_lr)
    table = np.asarray(
        [base_lr * decay**k for k in range(_TABLE_SIZE)], dtype=np.float32
    )
    steps_per_epoch = int(steps_per_epoch)
    decay_after = int(decay_after)

    def schedule(step: jax.Array | int) -> jax.Array:
        step = jnp.asarray(step, dtype=jnp.int32)
        epoch = step // steps_per_epoch
        exponent = jnp.maximum(epoch + 1 - decay_after, 0)
        from_table = jnp.asarray(table)[jnp.minimum(exponent, _TABLE_SIZE - 1)]
        from_pow = jnp.float32(base_lr) * jax.lax.pow(jnp.float32(decay), exponent)
        return jnp.where(exponent < _TABLE_SIZE, from_table, from_pow)

    return schedule


Schedule = float | Callable[[jax.Array | int], jax.Array]


def lr_metric(schedule: Callable[[jax.Array], jax.Array]) -> Callable[[object], dict[str, float]]:
    """``state -> {"lr": rate}``: the rate the last update used (``schedule(state.step - 1)``),
    for :func:`jaxrnn.train.run_training`'s ``extra_metrics``."""

    def metric(state) -> dict[str, float]:
        return {"lr": float(schedule(jnp.maximum(state.step - 1, 0)))}

    return metric


def _sgd(lr: Schedule, momentum: float | None) -> optax.GradientTransformation:
    return optax.sgd(lr, momentum=momentum)


def _nesterov(lr: Schedule, momentum: float | None) -> optax.GradientTransformation:
    return optax.sgd(lr, momentum=0.9 if momentum is None else momentum, nesterov=True)


def _rmsprop(lr: Schedule, momentum: float | None) -> optax.GradientTransformation:
    return optax.rmsprop(lr, momentum=momentum)


# name -> (factory(lr, momentum), takes momentum, decoupled weight decay argument or None)
OPTIMIZERS: dict[str, tuple[Callable[..., optax.GradientTransformation], bool, str | None]] = {
    "sgd": (_sgd, True, None),
    "nesterov": (_nesterov, True, None),
    "rmsprop": (_rmsprop, True, None),
    "adam": (lambda lr, _: optax.adam(lr), False, None),
    "adamax": (lambda lr, _: optax.adamax(lr), False, None),
    "nadam": (lambda lr, _: optax.nadam(lr), False, None),
    "radam": (lambda lr, _: optax.radam(lr), False, None),
    "adabelief": (lambda lr, _: optax.adabelief(lr), False, None),
    "adagrad": (lambda lr, _: optax.adagrad(lr), False, None),
    "adamw": (optax.adamw, False, "weight_decay"),
    "lamb": (optax.lamb, False, "weight_decay"),
    "lion": (optax.lion, False, "weight_decay"),
}
"""Optimizers :func:`make_optimizer` knows. ``adamw``, ``lamb`` and ``lion`` apply
``weight_decay`` decoupled (Loshchilov & Hutter, 2019); the others add it to the gradient
(L2 regularisation) before the update."""


def make_optimizer(
    name: str,
    learning_rate: Schedule,
    *,
    clip_norm: float | None,
    weight_decay: float = 0.0,
    momentum: float | None = None,
) -> optax.GradientTransformation:
    """``chain(clip_by_global_norm(clip_norm), <name>(learning_rate))``.

    Zaremba et al. (2014) use ``make_optimizer("sgd", epoch_decay(...), clip_norm=5.0)``.

    Args:
        name: one of :data:`OPTIMIZERS` (case-insensitive).
        learning_rate: a float or an optax schedule ``step -> lr``.
        clip_norm: clip the gradients' global norm to this value (> 0), or ``None`` for no
            clipping. Clipping happens before weight decay and the update.
        weight_decay: ``>= 0``. Decoupled for adamw/lamb/lion, L2 (added to the gradient)
            for the others.
        momentum: momentum for ``sgd``, ``nesterov`` (default 0.9) and ``rmsprop``; must be
            ``None`` for the others.

    Returns:
        An ``optax.GradientTransformation``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), a float
            ``learning_rate`` that is not finite and > 0, a bad ``clip_norm`` or
            ``weight_decay``, or ``momentum`` given to an optimizer that
            has none.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ValueError(
            f"make_optimizer: unknown optimizer name={name!r}; valid names: "
            f"{', '.join(sorted(OPTIMIZERS))}"
        )
    if not callable(learning_rate):
        _check_rate("make_optimizer", "learning_rate", learning_rate)
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"make_optimizer: clip_norm must be > 0 or None; got {clip_norm!r}")
    if not weight_decay >= 0:
        raise ValueError(f"make_optimizer: weight_decay must be >= 0; got {weight_decay!r}")
    factory, takes_momentum, decoupled = OPTIMIZERS[key]
    if momentum is not None and not takes_momentum:
        with_momentum = sorted(n for n, (_, m, _) in OPTIMIZERS.items() if m)
        raise ValueError(
            f"make_optimizer: momentum={momentum!r} given for name={name!r}, which takes "
            f"none; momentum applies to {', '.join(with_momentum)}"
        )
    parts: list[optax.GradientTransformation] = []
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(float(clip_norm)))
    if decoupled is not None:
        parts.append(factory(learning_rate, **{decoupled: float(weight_decay)}))
    else:
        if weight_decay > 0:
            parts.append(optax.add_decayed_weights(float(weight_decay)))
        parts.append(factory(learning_rate, momentum))
    return optax.chain(*parts)
