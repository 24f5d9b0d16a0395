"""Tests for jaxrnn.train.schedules: Zaremba's epoch decay and optimizers by name."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrnn.train import epoch_decay, make_optimizer


def test_epoch_decay_small_preset():
    steps_per_epoch = 3
    schedule = epoch_decay(1.0, 0.5, 4, steps_per_epoch)
    # 1-based epochs 1..4 at 1.0, then halving (Zaremba's small config, max_max_epoch 13).
    expected = [1.0] * 4 + [0.5 ** k for k in range(1, 10)]
    got = [float(schedule(epoch * steps_per_epoch + i))
           for epoch in range(13) for i in range(steps_per_epoch)]
    assert got == [lr for lr in expected for _ in range(steps_per_epoch)]
    assert schedule(jnp.int32(5)).dtype == jnp.float32


def test_epoch_decay_equals_reference_formula_rounded_once():
    schedule = jax.jit(epoch_decay(1.0, 1 / 1.15, 14, 2))  # large preset
    for epoch in range(55):
        reference = 1.0 * (1 / 1.15) ** max(epoch + 1 - 14, 0.0)
        assert float(schedule(jnp.int32(2 * epoch + 1))) == float(np.float32(reference))


def test_epoch_decay_errors():
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int; got 0"):
        epoch_decay(1.0, 0.5, 4, 0)
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\]; got 1.5"):
        epoch_decay(1.0, 1.5, 4, 10)


def test_make_optimizer_clips_then_steps():
    optimizer = make_optimizer("sgd", 0.1, clip_norm=1.0)
    params = {"w": jnp.zeros((2,), jnp.float32)}
    grads = {"w": jnp.asarray([3.0, 4.0], jnp.float32)}  # norm 5 -> clipped to 1
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]), [-0.06, -0.08], rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "nesterov", "adam", "adamw", "rmsprop", "adagrad",
                                  "lamb", "lion"])
def test_make_optimizer_names_build_and_update(name):
    with jax.numpy_dtype_promotion("standard"):
        optimizer = make_optimizer(name.upper(), epoch_decay(0.1, 0.5, 1, 2),
                                   clip_norm=5.0, weight_decay=0.01)
        params = {"w": jnp.ones((3,), jnp.float32)}
        updates, _ = optimizer.update(params, optimizer.init(params), params)
    new = optax.apply_updates(params, updates)
    assert np.all(np.asarray(new["w"]) < 1.0)


def test_make_optimizer_errors():
    with pytest.raises(ValueError, match=r"unknown optimizer name='adamx'; valid names: .*sgd"):
        make_optimizer("adamx", 0.1, clip_norm=None)
    with pytest.raises(ValueError, match=r"momentum=0.9 given for name='adam'.*sgd"):
        make_optimizer("adam", 0.1, clip_norm=None, momentum=0.9)
    with pytest.raises(ValueError, match=r"clip_norm must be > 0 or None; got 0"):
        make_optimizer("sgd", 0.1, clip_norm=0)
