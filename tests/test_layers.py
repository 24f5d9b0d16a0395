"""StackedRNN: stacking, bidirectional, residual, dropout, trainable initial state, step API."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

D, H, B, T = 3, 4, 2, 5


def _xs():
    return jax.random.normal(jax.random.PRNGKey(1), (B, T, D))


def test_stack_equals_cells_composed_by_hand():
    model = jaxrnn.StackedRNN(jaxrnn.LSTM(H), num_layers=2, bidirectional=True)
    params = model.init(jax.random.PRNGKey(0), D)
    lengths = jnp.array([5, 3], dtype=jnp.int32)
    ys, state = model.apply(params, _xs(), lengths=lengths)
    h = _xs()
    for layer in range(2):
        lp = params["layers"][layer]
        f, cf = jaxrnn.scan(model.cell, lp["fwd"], h, lengths=lengths)
        b, cb = jaxrnn.scan(model.cell, lp["bwd"], h, lengths=lengths, reverse=True)
        h = jnp.concatenate([f, b], -1)
        for got, want in zip(jax.tree.leaves(state[layer]), jax.tree.leaves((cf, cb)), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(ys, h, rtol=1e-6)
    assert ys.shape == (B, T, 2 * H)


def test_residual_and_learned_initial_state_get_gradients():
    model = jaxrnn.StackedRNN(jaxrnn.GRU(H), num_layers=3, residual=True, learn_initial_state=True)
    params = model.init(jax.random.PRNGKey(0), D)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, _xs())[0] ** 2))(params)
    assert float(jnp.abs(grads["initial"][0]["fwd"].h).sum()) > 0
    plain = jaxrnn.StackedRNN(jaxrnn.GRU(H), num_layers=3)
    ys_res, _ = model.apply(params, _xs())
    ys_plain, _ = plain.apply({"layers": params["layers"]}, _xs())
    assert not np.allclose(ys_res, ys_plain)


def test_dropout_train_eval_and_locked_masks():
    model = jaxrnn.StackedRNN(jaxrnn.LSTM(H), num_layers=2, dropout=0.5, locked_dropout=True)
    params = model.init(jax.random.PRNGKey(0), D)
    xs = _xs()
    eval_ys, _ = model.apply(params, xs)
    plain_ys, _ = jaxrnn.StackedRNN(jaxrnn.LSTM(H), num_layers=2).apply(params, xs)
    np.testing.assert_array_equal(eval_ys, plain_ys)  # no dropout in eval
    key = jax.random.PRNGKey(7)
    a, _ = model.apply(params, xs, key=key, train=True)
    b, _ = model.apply(params, xs, key=key, train=True)
    np.testing.assert_array_equal(a, b)  # explicit key: deterministic
    assert not np.allclose(a, eval_ys)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model.apply(params, xs, train=True)
    x = jnp.ones((B, T, 6))
    dropped = jaxrnn.dropout(key, 0.5, x, broadcast_time=True)
    zero_pattern = np.asarray(dropped == 0)
    assert (zero_pattern == zero_pattern[:, :1]).all()  # the same mask at every step
    assert set(np.unique(np.asarray(dropped)).tolist()) <= {0.0, 2.0}


def test_variational_recurrent_dropout_is_one_mask_per_sequence():
    """With p -> mask m, the stack equals scan with h_mask = m / (1 - p) on h_{t-1}."""
    rate = 0.5
    model = jaxrnn.StackedRNN(jaxrnn.LSTM(H), recurrent_dropout=rate)
    params = model.init(jax.random.PRNGKey(0), D)
    key = jax.random.PRNGKey(3)
    ys, _ = model.apply(params, _xs(), key=key, train=True)
    keep = jax.random.bernoulli(jax.random.fold_in(key, 1), 1 - rate, (B, H))
    want, _ = jaxrnn.scan(
        model.cell, params["layers"][0]["fwd"], _xs(), h_mask=keep.astype(jnp.float32) / 0.5
    )
    np.testing.assert_allclose(ys, want, rtol=1e-6)


def test_step_api_matches_apply():
    model = jaxrnn.StackedRNN(jaxrnn.LSTM(H, proj_size=2), num_layers=2, residual=True)
    params = model.init(jax.random.PRNGKey(0), D)
    ys, final = model.apply(params, _xs())
    state, outs = model.initial_state(params, B), []
    step = jax.jit(model.step)
    for t in range(T):
        state, y = step(params, state, _xs()[:, t])
        outs.append(y)
    np.testing.assert_allclose(jnp.stack(outs, 1), ys, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(state, final, rtol=1e-5, atol=1e-6)
