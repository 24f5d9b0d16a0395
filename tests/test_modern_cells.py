"""sLSTM, mLSTM, DeltaNet, Gated DeltaNet, Mamba and the negative-eigenvalue options against
independent float64 numpy transcriptions of their published equations (tests/modern_references.py),
and argument errors. associative_scan == scan for the new linear recurrences (mamba, mamba_neg,
rglru_neg, mingru_neg) is checked by tests/test_parallel.py over the registry's linear family.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from modern_references import delta_rule, mamba, mingru_neg, mlstm, rglru_neg, slstm

import jaxrnn

D, T, B = 2, 6, 2


CASES = {
    "slstm": (jaxrnn.SLSTM(4, num_heads=2),
              lambda p, xs: slstm(p, xs, hidden=4, heads=2, forget_gate="sigmoid")),
    "slstm_exp": (jaxrnn.SLSTM(3, forget_gate="exp"),
                  lambda p, xs: slstm(p, xs, hidden=3, heads=1, forget_gate="exp")),
    "mlstm": (jaxrnn.MLSTM(4, num_heads=2, key_size=3),
              lambda p, xs: mlstm(p, xs, hidden=4, heads=2, key_size=3)),
    "deltanet": (jaxrnn.DeltaNet(4, num_heads=2),
                 lambda p, xs: delta_rule(p, xs, hidden=4, heads=2, gated=False, negative=False)),
    "deltanet_neg": (jaxrnn.DeltaNet(3, negative_eigenvalues=True),
                     lambda p, xs: delta_rule(p, xs, hidden=3, heads=1, gated=False,
                                              negative=True)),
    "gated_deltanet": (jaxrnn.GatedDeltaNet(4, num_heads=2),
                       lambda p, xs: delta_rule(p, xs, hidden=4, heads=2, gated=True,
                                                negative=False)),
    "gated_deltanet_neg": (jaxrnn.GatedDeltaNet(3, negative_eigenvalues=True),
                           lambda p, xs: delta_rule(p, xs, hidden=3, heads=1, gated=True,
                                                    negative=True)),
    "mamba": (jaxrnn.Mamba(3, state_size=4),
              lambda p, xs: mamba(p, xs, hidden=3, state=4, negative=False)),
    "mamba_neg": (jaxrnn.Mamba(3, state_size=4, negative_eigenvalues=True),
                  lambda p, xs: mamba(p, xs, hidden=3, state=4, negative=True)),
    "rglru_neg": (jaxrnn.RGLRU(3, negative_eigenvalues=True),
                  lambda p, xs: rglru_neg(p, xs, hidden=3)),
    "mingru_neg": (jaxrnn.MinGRU(3, log_space=False, negative_eigenvalues=True),
                   lambda p, xs: mingru_neg(p, xs, hidden=3)),
}


def perturbed(params, key, scale=0.3):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for k, leaf in zip(keys, leaves, strict=True)
    ])


@pytest.mark.parametrize("name", list(CASES))
def test_step_matches_published_equations_float64(name):
    cell, reference = CASES[name]
    params = perturbed(cell.init(jax.random.PRNGKey(0), D), jax.random.PRNGKey(1))
    xs = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (T, D)), np.float64)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    want = reference(p64, xs)
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in p64.items()}
        carry = cell.initial_carry(p)
        step = jax.jit(cell.step)
        got = []
        for x in jnp.asarray(xs):
            carry, y = step(p, carry, x)
            assert y.dtype == jnp.float64 and jax.tree.leaves(carry)[0].dtype == jnp.float64
            got.append(y)
    np.testing.assert_allclose(np.stack(got), want, rtol=1e-9, atol=1e-12, err_msg=name)


def test_negative_eigenvalues_reach_negative_transitions():
    xp = jnp.array([0.0, 9.0, 0.0])  # u, r, i of one unit: a large recurrence gate
    cell = jaxrnn.RGLRU(1, negative_eigenvalues=True)
    a, _ = cell.coefficients({"a_logit": jnp.array([-3.0])}, xp)
    assert float(a[0]) < -0.5
    a, _ = jaxrnn.MinGRU(1, log_space=False, negative_eigenvalues=True).coefficients(
        {}, jnp.array([6.0, 0.0]))
    assert float(a[0]) < -0.9
    mamba_cell = jaxrnn.Mamba(1, state_size=1, negative_eigenvalues=True)
    a, _ = mamba_cell.coefficients({"a_log": jnp.zeros((1, 1))}, jnp.array([0.0, 5.0, 1.0, 1.0]))
    assert float(a[0]) < -0.9


def test_slstm_h_mask_enters_the_recurrence():
    cell = jaxrnn.SLSTM(4, num_heads=2)
    assert cell.recurrent_mask_field == "h"
    params = cell.init(jax.random.PRNGKey(0), D)
    carry = perturbed(cell.initial_carry(params), jax.random.PRNGKey(1))._replace(
        n=jnp.ones(4))
    xp = cell.input_projection(params, jnp.ones(D))
    masked, _ = cell.recurrent_step(params, carry, xp, jnp.array([0.0, 1.0, 0.0, 1.0]))
    zeroed, _ = cell.recurrent_step(params, carry._replace(h=carry.h * jnp.array(
        [0.0, 1.0, 0.0, 1.0])), xp)
    np.testing.assert_array_equal(masked.c, zeroed.c)


def test_matrix_cells_reject_h_mask():
    for cell in (jaxrnn.MLSTM(2), jaxrnn.DeltaNet(2), jaxrnn.Mamba(2, state_size=2)):
        params = cell.init(jax.random.PRNGKey(0), D)
        xp = cell.input_projection(params, jnp.ones(D))
        with pytest.raises(ValueError, match=f"{type(cell).__name__}.recurrent_step: h_mask"):
            cell.recurrent_step(params, cell.initial_carry(params), xp, jnp.ones(2))


def test_stacked_rnn_runs_the_new_cells():
    xs = jax.random.normal(jax.random.PRNGKey(0), (2, 3, D))
    for name in ("slstm", "mlstm", "gated_deltanet", "mamba"):
        stack = jaxrnn.StackedRNN(CASES[name][0], num_layers=2)
        params = stack.init(jax.random.PRNGKey(1), D)
        ys, _ = jax.jit(stack.apply)(params, xs, lengths=jnp.array([3, 2]))
        assert ys.shape == (2, 3, stack.output_size) and np.all(np.isfinite(ys))
        np.testing.assert_array_equal(ys[1, 2], 0.0)


@pytest.mark.parametrize("build, message", [
    (lambda: jaxrnn.SLSTM(4, num_heads=3), "SLSTM: num_heads=3 must divide hidden_size=4"),
    (lambda: jaxrnn.SLSTM(0), "SLSTM: hidden_size must be a positive integer; got 0"),
    (lambda: jaxrnn.SLSTM(4, forget_gate="tanh"), "forget_gate='tanh'; expected 'exp' or"),
    (lambda: jaxrnn.MLSTM(4, num_heads=0), "MLSTM: num_heads must be a positive integer"),
    (lambda: jaxrnn.MLSTM(4, key_size=0), "MLSTM: key_size must be a positive integer; got 0"),
    (lambda: jaxrnn.DeltaNet(3, num_heads=2), "DeltaNet: num_heads=2 must divide"),
    (lambda: jaxrnn.GatedDeltaNet(2.5), "GatedDeltaNet: hidden_size must be a positive"),
    (lambda: jaxrnn.Mamba(4, state_size=-1), "Mamba: state_size must be a positive integer"),
    (lambda: jaxrnn.Mamba(4, dt_min=0.0), "Mamba: need 0 < dt_min <= dt_max"),
    (lambda: jaxrnn.MinGRU(4, negative_eigenvalues=True), "needs log_space=False"),
])
def test_bad_hyperparameters_are_named(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build()
