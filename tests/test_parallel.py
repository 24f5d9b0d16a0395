"""The associative-scan path equals the sequential one (every fast path has its slow twin)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import variants
from jaxrnn.drivers.parallel import associative_scan, is_linear

H, D, B, T = 3, 2, 3, 7
LINEAR = variants.names("linear")


def _setup(name, **options):
    cell = variants.make(name, H, **options)
    params = cell.init(jax.random.PRNGKey(0), D)
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    xs = jax.random.normal(keys[0], (B, T, D))
    carry = jax.tree.map(
        lambda c: 0.5 * jax.random.normal(keys[1], c.shape, c.dtype),
        cell.initial_carry(params, (B,)),
    )
    return cell, params, xs, carry


def _assert_trees_close(got, want, tol=2e-5):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", LINEAR)
def test_parallel_equals_sequential_with_gradients(name, reverse):
    cell, params, xs, carry = _setup(name)
    assert is_linear(cell)
    lengths = jnp.array([T, 4, 0], jnp.int32)
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True).at[1, 1].set(True).at[2, 2].set(True)

    def run(driver):
        def loss(p):
            ys, final = driver(cell, p, xs, carry, lengths=lengths, resets=resets,
                               reverse=reverse)
            return jnp.sum(jnp.square(ys)) + jnp.sum(jnp.square(final.h)), (ys, final)

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    (_, want), want_grads = run(jaxrnn.scan)
    (_, got), got_grads = run(associative_scan)
    _assert_trees_close(got, want)
    _assert_trees_close(got_grads, want_grads, tol=1e-4)
    ys, final = got
    assert not np.any(np.asarray(ys)[1, 4:]), "outputs past the length are zero"
    # L = 0: the final carry is the initial carry
    _assert_trees_close(jax.tree.map(lambda c: c[2], final), jax.tree.map(lambda c: c[2], carry))


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_linear_space_option_and_time_major(name):
    cell, params, xs, carry = _setup(name, log_space=False)
    want = jax.jit(lambda p: jaxrnn.scan(cell, p, xs, carry))(params)
    got = jax.jit(
        lambda p: associative_scan(cell, p, jnp.swapaxes(xs, 0, 1), carry, time_major=True)
    )(params)
    _assert_trees_close((jnp.swapaxes(got[0], 0, 1), got[1]), want)


def test_log_space_is_stable_when_the_decay_underflows():
    # z ~ 0.95 so a_t ~ 0.05: prod_t a_t underflows float32 after ~30 steps. The log-space scan
    # keeps sum_t log a_t (about -900 here) and stays finite and equal to the loop.
    cell = variants.make("mingru", H)
    params = cell.init(jax.random.PRNGKey(0), D)
    params = params | {"b_ih": params["b_ih"].at[:H].set(3.0)}
    xs = jax.random.normal(jax.random.PRNGKey(1), (1, 300, D))
    want, _ = jax.jit(lambda p, x: jaxrnn.scan(cell, p, x))(params, xs)
    got, _ = jax.jit(lambda p, x: associative_scan(cell, p, x))(params, xs)
    assert np.all(np.isfinite(np.asarray(got)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=2e-5)


def test_errors_name_the_argument():
    cell, params, xs, carry = _setup("mingru")
    with pytest.raises(TypeError, match="has no linear recurrence .* use jaxrnn.scan"):
        lstm = jaxrnn.LSTM(H)
        associative_scan(lstm, lstm.init(jax.random.PRNGKey(0), D), xs)
    with pytest.raises(ValueError, match=r"xs has shape \(3, 7, 5\); expected \(\?, \?, 2\)"):
        associative_scan(cell, params, jnp.zeros((B, T, 5)))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\]"):
        associative_scan(cell, params, xs, lengths=jnp.array([1, 2, 9], jnp.int32))
    with pytest.raises(TypeError, match="resets has dtype float32; expected a boolean"):
        associative_scan(cell, params, xs, resets=jnp.zeros((B, T)))
