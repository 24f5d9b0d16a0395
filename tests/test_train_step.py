"""Tests for jaxrnn.train.state and jaxrnn.train.step on a linear regression."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrnn.train import TrainState, evaluate, make_eval_step, make_optimizer, make_train_step

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 3)).astype(np.float32)
Y = (X @ np.asarray([1.0, -2.0, 0.5], np.float32) + 0.3).astype(np.float32)


def init_params():
    return {"w": jnp.zeros((3,), jnp.float32), "b": jnp.zeros((), jnp.float32)}


def loss_fn(params, carry, batch, key):
    x, y = batch
    noise = 1e-3 * jax.random.normal(key, y.shape, jnp.float32)  # uses the step key
    pred = x @ params["w"] + params["b"] + noise
    loss = jnp.mean((pred - y) ** 2)
    return loss, (carry + 1, {"abs_err": jnp.mean(jnp.abs(pred - y))})


def fresh_state(optimizer):
    return TrainState.create(init_params(), optimizer, seed=0, carry=jnp.zeros((), jnp.int32))


def run(steps, optimizer, train_step):
    state, losses = fresh_state(optimizer), []
    for _ in range(steps):
        state, metrics = train_step(state, (X, Y))
        losses.append(float(metrics["loss"]))
    return state, losses


def test_train_step_decreases_loss_and_counts():
    optimizer = make_optimizer("sgd", 0.1, clip_norm=10.0)
    train_step = make_train_step(loss_fn, optimizer)
    state, losses = run(30, optimizer, train_step)
    assert losses[-1] < 0.01 * losses[0]
    assert int(state.step) == 30 and state.step.dtype == jnp.int32
    assert int(state.carry) == 30
    assert state.key.dtype == jnp.uint32


def test_train_step_is_deterministic_and_uses_step_keys():
    optimizer = make_optimizer("sgd", 0.1, clip_norm=None)
    train_step = make_train_step(loss_fn, optimizer)
    a, losses_a = run(5, optimizer, train_step)
    b, losses_b = run(5, optimizer, train_step)
    assert losses_a == losses_b
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    # Step s draws from fold_in(key, s): the un-jitted step with its own key agrees.
    slow = make_train_step(loss_fn, optimizer, jit=False, donate=False)
    c, _ = run(5, optimizer, slow)
    np.testing.assert_allclose(np.asarray(c.params["w"]), np.asarray(a.params["w"]), rtol=1e-6)


def test_train_step_metrics_grad_norm_and_adam():
    with jax.numpy_dtype_promotion("standard"):
        optimizer = make_optimizer("adam", 1e-2, clip_norm=1.0)
        train_step = make_train_step(loss_fn, optimizer, donate=False)
        state = fresh_state(optimizer)
        _, metrics = train_step(state, (X, Y))
    grads = jax.grad(lambda p: loss_fn(p, state.carry, (X, Y),
                                       jax.random.fold_in(state.key, 0))[0])(state.params)
    assert set(metrics) == {"loss", "objective", "grad_norm", "abs_err"}
    np.testing.assert_allclose(float(metrics["grad_norm"]), float(optax.tree.norm(grads)),
                               rtol=1e-5)


def test_create_rejects_typed_keys_and_missing_seed():
    optimizer = make_optimizer("sgd", 0.1, clip_norm=None)
    with pytest.raises(ValueError, match="typed PRNG key"):
        TrainState.create(init_params(), optimizer, key=jax.random.key(0))
    with pytest.raises(ValueError, match="exactly one of seed and key"):
        TrainState.create(init_params(), optimizer)


def test_evaluate_sums_on_device_and_threads_carry():
    def eval_fn(params, carry, batch):
        x, y = batch
        err = (x @ params["w"] + params["b"] - y) ** 2
        return carry + 1, {"loss_sum": jnp.sum(err), "count": jnp.asarray(y.shape[0],
                                                                         jnp.int32),
                           "carry_seen": carry.astype(jnp.float32)}

    params = {"w": jnp.ones((3,), jnp.float32), "b": jnp.zeros((), jnp.float32)}
    batches = [(X[i:i + 8], Y[i:i + 8]) for i in range(0, 32, 8)]
    result = evaluate(make_eval_step(eval_fn), params, jnp.zeros((), jnp.int32), batches)
    expected = sum(float(np.sum((x @ np.ones(3, np.float32) - y) ** 2)) for x, y in batches)
    assert result["count"] == 32 and isinstance(result["count"], int)
    assert result["carry_seen"] == 0 + 1 + 2 + 3
    np.testing.assert_allclose(result["loss_sum"], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="batches is empty"):
        evaluate(make_eval_step(eval_fn), params, jnp.zeros((), jnp.int32), [])


def test_loss_fn_may_report_its_own_loss():
    def summed_loss(params, carry, batch, key):
        loss, (carry, metrics) = loss_fn(params, carry, batch, key)
        return 3.0 * loss, (carry, {**metrics, "loss": loss})  # objective summed over 3 steps

    optimizer = make_optimizer("sgd", 0.1, clip_norm=None)
    state = fresh_state(optimizer)
    _, reported = make_train_step(summed_loss, optimizer, donate=False)(state, (X, Y))
    _, plain = make_train_step(loss_fn, optimizer, donate=False)(state, (X, Y))
    assert float(reported["loss"]) == float(plain["loss"])
    assert float(reported["objective"]) == float(3.0 * plain["objective"])
