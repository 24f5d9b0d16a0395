"""sLSTM, mLSTM, DeltaNet, Gated DeltaNet, Mamba and the negative-eigenvalue options against
independent float64 numpy transcriptions of their published equations.

Each reference reads the weights out of the documented parameter layout and loops over time,
unstabilised where the cell stabilises (xLSTM's exponential gates): the stabiliser must not
change the function.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

D, T, B = 2, 6, 2


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(0.0, x)


def split_rows(vector, sizes):
    return np.split(vector, np.cumsum(sizes)[:-1])


def slstm(p, xs, *, hidden, heads, forget_gate):
    """Beck et al. (2024), sLSTM, eqs. (8)-(13), without the stabiliser."""
    hs = hidden // heads
    h, c, n = np.zeros(hidden), np.zeros(hidden), np.zeros(hidden)
    out = []
    for x in xs:
        rec = np.zeros(4 * hidden)
        for gate in range(4):
            for j in range(heads):
                rows = slice(gate * hidden + j * hs, gate * hidden + (j + 1) * hs)
                rec[rows] = p["w_hh"][rows] @ h[j * hs : (j + 1) * hs]
        i_raw, f_raw, z_raw, o_raw = split_rows(p["w_ih"] @ x + p["b_ih"] + rec, [hidden] * 4)
        f = np.exp(f_raw) if forget_gate == "exp" else sig(f_raw)
        i = np.exp(i_raw)
        c = f * c + i * np.tanh(z_raw)
        n = f * n + i
        h = sig(o_raw) * c / n
        out.append(h)
    return np.stack(out)


def mlstm(p, xs, *, hidden, heads, key_size):
    """Beck et al. (2024), mLSTM, eqs. (19)-(27), sigmoid forget gate, without the stabiliser."""
    dv = hidden // heads
    dk = key_size or dv
    mem = [np.zeros((dk, dv)) for _ in range(heads)]
    norm = [np.zeros(dk) for _ in range(heads)]
    out = []
    for x in xs:
        q, k, v, i_raw, f_raw, o_raw = split_rows(
            p["w_ih"] @ x + p["b_ih"], [heads * dk, heads * dk, hidden, heads, heads, hidden])
        h = []
        for j in range(heads):
            qj, kj = q[j * dk : (j + 1) * dk], k[j * dk : (j + 1) * dk] / np.sqrt(dk)
            vj = v[j * dv : (j + 1) * dv]
            i, f = np.exp(i_raw[j]), sig(f_raw[j])
            mem[j] = f * mem[j] + i * np.outer(kj, vj)
            norm[j] = f * norm[j] + i * kj
            h.append(mem[j].T @ qj / max(abs(norm[j] @ qj), 1.0))
        out.append(sig(o_raw) * np.concatenate(h))
    return np.stack(out)


def l2(u):
    return u / np.sqrt(u @ u + 1e-6)


def delta_rule(p, xs, *, hidden, heads, gated, negative):
    """Yang et al. (2024) DeltaNet / Yang et al. (2025) Gated DeltaNet; Grazzi et al. (2025)
    beta in (0, 2)."""
    dv = dk = hidden // heads
    states = [np.zeros((dv, dk)) for _ in range(heads)]
    sizes = [heads * dk, heads * dk, hidden, heads] + ([heads] if gated else [])
    out = []
    for x in xs:
        parts = split_rows(p["w_ih"] @ x + p["b_ih"], sizes)
        y = []
        for j in range(heads):
            q, k = l2(parts[0][j * dk : (j + 1) * dk]), l2(parts[1][j * dk : (j + 1) * dk])
            v = parts[2][j * dv : (j + 1) * dv]
            beta = (2.0 if negative else 1.0) * sig(parts[3][j])
            alpha = np.exp(-np.exp(p["a_log"][j]) * softplus(parts[4][j])) if gated else 1.0
            states[j] = (alpha * states[j] @ (np.eye(dk) - beta * np.outer(k, k))
                         + beta * np.outer(v, k))
            y.append(states[j] @ q)
        out.append(np.concatenate(y))
    return np.stack(out)


def mamba(p, xs, *, hidden, state, negative):
    """Gu & Dao (2023), S6 with zero-order-hold A and Delta*B; Grazzi et al. (2025): 2a - 1."""
    s = np.zeros((hidden, state))
    a_cont = -np.exp(p["a_log"])
    out = []
    for x in xs:
        u, dt, b_in, c_in = split_rows(p["w_ih"] @ x + p["b_ih"], [hidden, hidden, state, state])
        delta = softplus(dt)
        out_h = np.zeros(hidden)
        for ch in range(hidden):
            for n in range(state):
                a = np.exp(delta[ch] * a_cont[ch, n])
                a = 2 * a - 1 if negative else a
                s[ch, n] = a * s[ch, n] + delta[ch] * b_in[n] * u[ch]
            out_h[ch] = s[ch] @ c_in + p["d_skip"][ch] * u[ch]
        out.append(out_h)
    return np.stack(out)


def rglru_neg(p, xs, *, hidden):
    """De et al. (2024)'s RG-LRU with the transition 2a - 1 and normaliser sqrt(1 - (2a-1)^2)."""
    h, out = np.zeros(hidden), []
    for x in xs:
        u, r_raw, i_raw = split_rows(p["w_ih"] @ x + p["b_ih"], [hidden] * 3)
        a = 2 * sig(p["a_logit"]) ** (8.0 * sig(r_raw)) - 1
        h = a * h + np.sqrt(1 - a**2) * (sig(i_raw) * u)
        out.append(h)
    return np.stack(out)


def mingru_neg(p, xs, *, hidden):
    """Feng et al. (2024)'s minGRU in linear space with the transition 1 - 2z."""
    h, out = np.zeros(hidden), []
    for x in xs:
        k_z, k_h = split_rows(p["w_ih"] @ x + p["b_ih"], [hidden] * 2)
        z = sig(k_z)
        h = (1 - 2 * z) * h + z * k_h
        out.append(h)
    return np.stack(out)


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


@pytest.mark.parametrize("name", ["mamba", "mamba_neg", "rglru_neg", "mingru_neg"])
def test_associative_scan_equals_scan(name):
    cell, _ = CASES[name]
    params = perturbed(cell.init(jax.random.PRNGKey(0), D), jax.random.PRNGKey(1))
    xs = jax.random.normal(jax.random.PRNGKey(2), (3, 7, D))
    lengths = jnp.array([7, 4, 0])
    resets = jax.random.bernoulli(jax.random.PRNGKey(3), 0.3, (3, 7))
    resets = resets & (jnp.arange(7)[None, :] < lengths[:, None])
    carry = perturbed(cell.initial_carry(params, (3,)), jax.random.PRNGKey(4))

    @jax.jit
    def both(params, xs, carry):
        return [(jaxrnn.associative_scan(cell, params, xs, carry, lengths=lengths,
                                         resets=resets, reverse=reverse),
                 jaxrnn.scan(cell, params, xs, carry, lengths=lengths, resets=resets,
                             reverse=reverse))
                for reverse in (False, True)]

    for reverse, (fast, slow) in zip((False, True), both(params, xs, carry), strict=True):
        for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(slow), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{name} {reverse}")


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
