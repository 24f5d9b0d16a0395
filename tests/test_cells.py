"""Descriptor tests: every cell configuration through the same checks (as haiku's tests do)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn

INPUT, HIDDEN, BATCH, STEPS = 3, 4, 2, 3

CELLS = {
    "elman_tanh": jaxrnn.Elman(HIDDEN),
    "elman_relu": jaxrnn.Elman(HIDDEN, nonlinearity="relu"),
    "lstm": jaxrnn.LSTM(HIDDEN),
    "lstm_forget_bias1": jaxrnn.LSTM(HIDDEN, forget_bias=1.0, initializer=jaxrnn.Uniform(0.1)),
    "lstm_proj": jaxrnn.LSTM(HIDDEN, proj_size=2),
    "lstm_nobias_orth": jaxrnn.LSTM(HIDDEN, use_bias=False, initializer="orthogonal"),
    "gru": jaxrnn.GRU(HIDDEN),
    "gru_reset_before": jaxrnn.GRU(HIDDEN, reset_after=False),
}

# Golden parameter layouts: a refactor must not silently change a checkpoint's layout.
GOLDEN = {
    "elman_tanh": {"w_ih": (4, 3), "w_hh": (4, 4), "b_ih": (4,), "b_hh": (4,)},
    "lstm": {"w_ih": (16, 3), "w_hh": (16, 4), "b_ih": (16,), "b_hh": (16,)},
    "lstm_proj": {"w_ih": (16, 3), "w_hh": (16, 2), "b_ih": (16,), "b_hh": (16,), "w_hr": (2, 4)},
    "lstm_nobias_orth": {"w_ih": (16, 3), "w_hh": (16, 4)},
    "gru": {"w_ih": (12, 3), "w_hh": (12, 4), "b_ih": (12,), "b_hh": (12,)},
}
GOLDEN_CARRY = {"elman_tanh": ("h",), "lstm": ("h", "c"), "gru": ("h",)}


def _setup(cell):
    params = cell.init(jax.random.PRNGKey(0), INPUT)
    xs = jax.random.normal(jax.random.PRNGKey(1), (BATCH, STEPS, INPUT))
    return params, xs


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_param_layout_is_pinned(name):
    params = CELLS[name].init(jax.random.PRNGKey(0), INPUT)
    assert {k: v.shape for k, v in params.items()} == GOLDEN[name]
    assert list(params) == list(GOLDEN[name])  # order of the dict, too


@pytest.mark.parametrize("name", sorted(GOLDEN_CARRY))
def test_carry_fields_are_named(name):
    cell = CELLS[name]
    carry = cell.initial_carry(cell.init(jax.random.PRNGKey(0), INPUT))
    assert carry._fields == GOLDEN_CARRY[name]


def test_gate_order_lstm_is_ifgo():
    """Pre-activation rows are (i, f, g, o): drive one block at a time and watch the effect."""
    cell = jaxrnn.LSTM(1, use_bias=True)
    params = {k: jnp.zeros_like(v) for k, v in cell.init(jax.random.PRNGKey(0), 1).items()}
    big = 20.0
    b = jnp.array([big, -big, big, big])  # i open, f closed, g = 1, o open
    carry = jaxrnn.LSTMState(h=jnp.zeros((1,)), c=jnp.array([5.0]))
    params["b_ih"] = b
    new, _ = cell.step(params, carry, jnp.zeros((1,)))
    np.testing.assert_allclose(new.c, [1.0], atol=1e-6)  # forget closed, i*g = 1
    params["b_ih"] = jnp.array([-big, big, big, big])  # input closed, forget open
    new, _ = cell.step(params, carry, jnp.zeros((1,)))
    np.testing.assert_allclose(new.c, [5.0], atol=1e-6)


def test_gate_order_gru_is_rzn():
    cell = jaxrnn.GRU(1)
    params = {k: jnp.zeros_like(v) for k, v in cell.init(jax.random.PRNGKey(0), 1).items()}
    params["b_ih"] = jnp.array([0.0, 20.0, 0.0])  # z = 1: keep h
    carry = jaxrnn.GRUState(h=jnp.array([0.7]))
    new, _ = cell.step(params, carry, jnp.zeros((1,)))
    np.testing.assert_allclose(new.h, [0.7], atol=1e-6)
    params["b_ih"] = jnp.array([0.0, -20.0, 3.0])  # z = 0: h = n = tanh(3)
    new, _ = cell.step(params, carry, jnp.zeros((1,)))
    np.testing.assert_allclose(new.h, [np.tanh(3.0)], atol=1e-6)


def test_forget_bias_is_added_to_forget_preactivation():
    params = jaxrnn.LSTM(2).init(jax.random.PRNGKey(0), 3)
    carry = jaxrnn.LSTMState(h=jnp.ones((2,)), c=jnp.ones((2,)))
    x = jnp.ones((3,))
    shifted = dict(params, b_hh=params["b_hh"].at[2:4].add(1.0))
    a, _ = jaxrnn.LSTM(2, forget_bias=1.0).step(params, carry, x)
    b, _ = jaxrnn.LSTM(2).step(shifted, carry, x)
    np.testing.assert_allclose(a.c, b.c, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_descriptor(name):
    cell = CELLS[name]
    params, xs = _setup(cell)
    carry0 = cell.initial_carry(params, (BATCH,))

    # scan == a Python loop over vmapped steps
    ys, final = jax.jit(jaxrnn.scan, static_argnums=0)(cell, params, xs)
    chex.assert_shape(ys, (BATCH, STEPS, cell.output_size))
    assert ys.dtype == jnp.float32
    carry, loop_ys = carry0, []
    for t in range(STEPS):
        carry, y = jax.vmap(cell.step, in_axes=(None, 0, 0))(params, carry, xs[:, t])
        loop_ys.append(y)
    np.testing.assert_allclose(ys, jnp.stack(loop_ys, 1), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(final, carry, rtol=1e-5, atol=1e-6)  # and the same structure
    assert {a.dtype for a in jax.tree.leaves((final, carry))} == {jnp.dtype(jnp.float32)}

    # grads (first order, reverse mode) through the scan, wrt params and inputs
    def loss(p, x):
        out, fin = jaxrnn.scan(cell, p, x)
        return jnp.sum(out**2) + jnp.sum(fin.h)

    check_grads(loss, (params, xs), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("cell", [jaxrnn.LSTM(HIDDEN), jaxrnn.GRU(HIDDEN), jaxrnn.Elman(HIDDEN)])
def test_bfloat16_compute_keeps_state_float32(cell):
    import dataclasses

    low = dataclasses.replace(cell, compute_dtype=jnp.bfloat16)
    params, xs = _setup(cell)
    ys32, fin32 = jaxrnn.scan(cell, params, xs)
    ys16, fin16 = jaxrnn.scan(low, params, xs)
    assert ys16.dtype == jnp.float32
    for leaf in jax.tree.leaves(fin16):
        assert leaf.dtype == jnp.float32
    np.testing.assert_allclose(ys16, ys32, atol=3e-2)


def test_initializers():
    key = jax.random.PRNGKey(0)
    p = jaxrnn.LSTM(8, initializer=jaxrnn.Uniform(0.05)).init(key, 5)
    assert all(float(jnp.abs(v).max()) <= 0.05 for v in p.values())
    assert all(float(jnp.abs(v).max()) > 0.04 for v in p.values())  # biases too
    p = jaxrnn.LSTM(16).init(key, 5)
    assert float(jnp.abs(p["w_hh"]).max()) <= 0.25
    p = jaxrnn.GRU(8, initializer="orthogonal").init(key, 5)
    for block in jnp.split(p["w_hh"], 3):
        np.testing.assert_allclose(block @ block.T, jnp.eye(8), atol=1e-5)
    assert float(jnp.abs(p["b_ih"]).max()) == 0.0
    with pytest.raises(ValueError, match="init='glorot' is not known"):
        jaxrnn.LSTM(8, initializer="glorot").init(key, 5)


def test_cells_are_hashable_static_args():
    cell = jaxrnn.LSTM(HIDDEN, initializer=jaxrnn.Uniform(0.1))
    assert hash(cell) == hash(jaxrnn.LSTM(HIDDEN, initializer=jaxrnn.Uniform(0.1)))
    assert isinstance(cell, jaxrnn.Cell)
