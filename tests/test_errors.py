"""Bad input gets an error that names the argument, what it got and what it wanted."""

import jax
import jax.numpy as jnp
import pytest

import jaxrnn

D, H = 3, 4


@pytest.fixture(scope="module")
def lstm():
    cell = jaxrnn.LSTM(H)
    return cell, cell.init(jax.random.PRNGKey(0), D)


def test_step_batched_input(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"LSTM.step: x has shape \(2, 3\); expected \(3,\)"):
        cell.step(params, cell.initial_carry(params), jnp.ones((2, D)))


def test_step_int_input(lstm):
    cell, params = lstm
    with pytest.raises(TypeError, match="LSTM.step: x has dtype int32; expected a floating"):
        cell.step(params, cell.initial_carry(params), jnp.ones((D,), jnp.int32))


def test_scan_wrong_rank_and_feature_size(lstm):
    cell, params = lstm
    with pytest.raises(ValueError, match=r"jaxrnn.scan: xs has shape \(5, 3\); expected \[B, T"):
        jaxrnn.scan(cell, params, jnp.ones((5, D)))
    with pytest.raises(ValueError, match=r"xs has shape \(2, 5, 7\); expected \(\?, \?, 3\)"):
        jaxrnn.scan(cell, params, jnp.ones((2, 5, 7)))


def test_scan_lengths(lstm):
    cell, params = lstm
    xs = jnp.ones((2, 5, D))
    with pytest.raises(ValueError, match=r"lengths has shape \(3,\); expected \(2,\)"):
        jaxrnn.scan(cell, params, xs, lengths=jnp.array([1, 2, 3]))
    with pytest.raises(TypeError, match="lengths has dtype float32; expected an integer"):
        jaxrnn.scan(cell, params, xs, lengths=jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 5\]; got .* 9\]"):
        jaxrnn.scan(cell, params, xs, lengths=jnp.array([1, 9]))


def test_scan_carry_mismatch(lstm):
    cell, params = lstm
    xs = jnp.ones((2, 5, D))
    bad = jaxrnn.LSTMState(h=jnp.zeros((3, H)), c=jnp.zeros((3, H)))
    with pytest.raises(ValueError, match=r"carry.h has shape \(3, 4\); expected \(2, 4\)"):
        jaxrnn.scan(cell, params, xs, bad)
    with pytest.raises(ValueError, match="carry has structure"):
        jaxrnn.scan(cell, params, xs, jaxrnn.GRUState(h=jnp.zeros((2, H))))


def test_scan_resets_dtype(lstm):
    cell, params = lstm
    with pytest.raises(TypeError, match="resets has dtype int32; expected a boolean"):
        jaxrnn.scan(cell, params, jnp.ones((2, 5, D)), resets=jnp.zeros((2, 5), jnp.int32))


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="input_size must be a positive integer; got 0"):
        jaxrnn.GRU(4).init(jax.random.PRNGKey(0), 0)
    with pytest.raises(ValueError, match="nonlinearity='sigmoid'; expected 'tanh' or 'relu'"):
        jaxrnn.Elman(4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\); got 1.5"):
        jaxrnn.StackedRNN(jaxrnn.LSTM(4), dropout=1.5)


def test_stack_errors():
    model = jaxrnn.StackedRNN(jaxrnn.LSTM(H), num_layers=2)
    params = model.init(jax.random.PRNGKey(0), D)
    with pytest.raises(ValueError, match=r"StackedRNN.step: x has shape \(3,\); expected \[B"):
        model.step(params, model.initial_state(params, 1), jnp.ones((D,)))
    with pytest.raises(ValueError, match=r"initial_state.*has shape \(1, 4\); expected \(2, 4\)"):
        model.apply(params, jnp.ones((2, 5, D)), model.initial_state(params, 1))
