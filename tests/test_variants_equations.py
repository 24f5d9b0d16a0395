"""Every variant against an independent float64 numpy transcription of its published equations.

Each reference below (and in tests/modern_references.py) is written from the paper, not from
jaxrnn's code: it reads the weights out of the documented parameter layout and loops over time.
"""

import jax
import jax.numpy as jnp
import modern_references as modern
import numpy as np
import pytest

import jaxrnn
from jaxrnn import variants

H, D, T, B = 3, 2, 5, 2


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(0.0, x)


def blocks(w, names):
    return {n: w[k * H : (k + 1) * H] for k, n in enumerate(names)}


def greff(p, xs, *, rows, peep=True, ig=True, fg=True, og=True, iaf=True, oaf=True,
          cifg=False, fgr=False, fb=0.0, ln=False):
    """Greff et al. (2017), eqs. for the vanilla LSTM and the switches of its 8 variants;
    Ba et al. (2016) for ln."""
    W, R = blocks(p["w_ih"], rows), blocks(p["w_hh"], rows)
    b = {n: bi + bh for n, bi, bh in zip(rows, blocks(p["b_ih"], rows).values(),
                                        blocks(p["b_hh"], rows).values(), strict=True)}

    def lnorm(v, gain, shift=0.0):
        return (v - v.mean()) / np.sqrt(v.var() + 1e-5) * gain + shift

    y, c = np.zeros(H), np.zeros(H)
    sig_names = [n for n in rows if n != "g"]
    prev_gates = np.zeros(len(sig_names) * H)
    out = []
    for x in xs:
        if ln:
            wx = lnorm(p["w_ih"] @ x, p["ln_x_gain"])
            rh = lnorm(p["w_hh"] @ y, p["ln_h_gain"])
            a = {n: wx[k * H:(k + 1) * H] + rh[k * H:(k + 1) * H] + b[n]
                 for k, n in enumerate(rows)}
        else:
            a = {n: W[n] @ x + R[n] @ y + b[n] for n in rows}
        if fgr:
            ff = p["w_gg"] @ prev_gates
            for k, n in enumerate(sig_names):
                a[n] = a[n] + ff[k * H:(k + 1) * H]
        z = np.tanh(a["g"]) if iaf else a["g"]
        gates = {}
        if ig:
            gates["i"] = sig(a["i"] + (p["p_i"] * c if peep else 0.0) - (fb if cifg else 0.0))
        i = gates.get("i", 1.0)
        if cifg:
            f = 1.0 - i
        elif fg:
            f = gates["f"] = sig(a["f"] + (p["p_f"] * c if peep else 0.0) + fb)
        else:
            f = 1.0
        c = z * i + c * f
        if og:
            gates["o"] = sig(a["o"] + (p["p_o"] * c if peep else 0.0))
        o = gates.get("o", 1.0)
        hc = lnorm(c, p["ln_c_gain"], p["ln_c_bias"]) if ln else c
        y = (np.tanh(hc) if oaf else hc) * o
        if fgr:
            prev_gates = np.concatenate([gates[n] for n in sig_names])
        out.append(y)
    return np.stack(out)


def gru(p, xs, reset_after):
    """Cho et al. (2014); reset_after as cuDNN."""
    Wr, Wz, Wn = blocks(p["w_ih"], "rzn").values()
    Rr, Rz, Rn = blocks(p["w_hh"], "rzn").values()
    br, bz, bn = blocks(p["b_ih"], "rzn").values()
    cr, cz, cn = blocks(p["b_hh"], "rzn").values()
    h, out = np.zeros(H), []
    for x in xs:
        r = sig(Wr @ x + br + Rr @ h + cr)
        z = sig(Wz @ x + bz + Rz @ h + cz)
        if reset_after:
            n = np.tanh(Wn @ x + bn + r * (Rn @ h + cn))
        else:
            n = np.tanh(Wn @ x + bn + Rn @ (r * h) + cn)
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out)


def mgu(p, xs):
    """Zhou et al. (2016): f = sigma(W_f x + U_f h + b_f); h~ = tanh(W_h x + U_h (f*h) + b_h)."""
    Wf, Wh = blocks(p["w_ih"], "fh").values()
    Uf, Uh = blocks(p["w_hh"], "fh").values()
    bf, bh = (blocks(p["b_ih"], "fh")[k] + blocks(p["b_hh"], "fh")[k] for k in "fh")
    h, out = np.zeros(H), []
    for x in xs:
        f = sig(Wf @ x + Uf @ h + bf)
        cand = np.tanh(Wh @ x + Uh @ (f * h) + bh)
        h = (1 - f) * h + f * cand
        out.append(h)
    return np.stack(out)


def g(x):
    """Feng et al. (2024)'s positive activation for the log-space versions."""
    return np.where(x >= 0, x + 0.5, sig(x))


def mingru(p, xs):
    Wz, Wh = blocks(p["w_ih"], "zh").values()
    bz, bh = blocks(p["b_ih"], "zh").values()
    h, out = np.zeros(H), []
    for x in xs:
        z = sig(Wz @ x + bz)
        h = (1 - z) * h + z * g(Wh @ x + bh)
        out.append(h)
    return np.stack(out)


def minlstm(p, xs):
    Wf, Wi, Wh = blocks(p["w_ih"], "fih").values()
    bf, bi, bh = blocks(p["b_ih"], "fih").values()
    h, out = np.zeros(H), []
    for x in xs:
        f, i = sig(Wf @ x + bf), sig(Wi @ x + bi)
        h = f / (f + i) * h + i / (f + i) * g(Wh @ x + bh)
        out.append(h)
    return np.stack(out)


def lru(p, xs):
    """Orvieto et al. (2023): h = lambda h + gamma B x; y = Re(C h) + D x."""
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    gamma = np.exp(p["gamma_log"])
    n = lam.shape[0]
    Bm = p["w_ih"][:n] + 1j * p["w_ih"][n:]
    Cm = p["c_re"] + 1j * p["c_im"]
    h, out = np.zeros(n, complex), []
    for x in xs:
        h = lam * h + gamma * (Bm @ x)
        out.append((Cm @ h).real + p["w_skip"] @ x)
    return np.stack(out)


def rglru(p, xs):
    """De et al. (2024): a_t = sigma(Lambda)^(c r_t), h = a h + sqrt(1 - a^2) (i * x)."""
    Wu, Wa, Wx = blocks(p["w_ih"], "uax").values()
    bu, ba, bx = blocks(p["b_ih"], "uax").values()
    a_base = sig(p["a_logit"])
    h, out = np.zeros(H), []
    for x in xs:
        r, i, u = sig(Wa @ x + ba), sig(Wx @ x + bx), Wu @ x + bu
        a = a_base ** (8.0 * r)
        h = a * h + np.sqrt(1 - a**2) * (i * u)
        out.append(h)
    return np.stack(out)


IFGO = ("i", "f", "g", "o")
REFERENCES = {
    "vanilla": lambda p, xs: greff(p, xs, rows=IFGO),
    "nig": lambda p, xs: greff(p, xs, rows=("f", "g", "o"), ig=False),
    "nfg": lambda p, xs: greff(p, xs, rows=("i", "g", "o"), fg=False),
    "nog": lambda p, xs: greff(p, xs, rows=("i", "f", "g"), og=False),
    "niaf": lambda p, xs: greff(p, xs, rows=IFGO, iaf=False),
    "noaf": lambda p, xs: greff(p, xs, rows=IFGO, oaf=False),
    "cifg": lambda p, xs: greff(p, xs, rows=("i", "g", "o"), cifg=True),
    "np": lambda p, xs: greff(p, xs, rows=IFGO, peep=False),
    "fgr": lambda p, xs: greff(p, xs, rows=IFGO, fgr=True),
    "fb1": lambda p, xs: greff(p, xs, rows=IFGO, peep=False, fb=1.0),
    "lnlstm": lambda p, xs: greff(p, xs, rows=IFGO, peep=False, ln=True),
    "gru": lambda p, xs: gru(p, xs, reset_after=True),
    "gru_cho": lambda p, xs: gru(p, xs, reset_after=False),
    "mgu": mgu,
    "mingru": mingru,
    "minlstm": minlstm,
    "lru": lru,
    "rglru": rglru,
    "mingru_neg": lambda p, xs: modern.mingru_neg(p, xs, hidden=H),
    "rglru_neg": lambda p, xs: modern.rglru_neg(p, xs, hidden=H),
    "mamba": lambda p, xs: modern.mamba(p, xs, hidden=H, state=16, negative=False),
    "mamba_neg": lambda p, xs: modern.mamba(p, xs, hidden=H, state=16, negative=True),
    "slstm": lambda p, xs: modern.slstm(p, xs, hidden=H, heads=1, forget_gate="sigmoid"),
    "mlstm": lambda p, xs: modern.mlstm(p, xs, hidden=H, heads=1, key_size=None),
    **{name: (lambda p, xs, g=gated, n=neg: modern.delta_rule(p, xs, hidden=H, heads=1, gated=g,
                                                               negative=n))
       for name, gated, neg in [("deltanet", False, False), ("deltanet_neg", False, True),
                                ("gated_deltanet", True, False),
                                ("gated_deltanet_neg", True, True)]},
}


def test_every_variant_has_a_reference():
    assert set(REFERENCES) == set(variants.names())


def _perturbed(params, key):
    """Random non-trivial values for every parameter (LN gains away from 1, etc.)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [
        leaf + 0.3 * jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(
            keys, leaves, strict=True)
    ])


@pytest.mark.parametrize("name", variants.names())
def test_matches_published_equations(name):
    cell = variants.make(name, H)
    params = _perturbed(cell.init(jax.random.PRNGKey(0), D), jax.random.PRNGKey(1))
    if name == "lru":  # keep |lambda| < 1 and the phases positive after the perturbation
        params = params | {"nu_log": params["nu_log"] - 1.0}
    xs = jax.random.normal(jax.random.PRNGKey(2), (B, T, D))

    def loss(p):
        ys, _ = jaxrnn.scan(cell, p, xs)
        return jnp.sum(jnp.square(ys)), ys

    (_, ys), grads = jax.value_and_grad(loss, has_aux=True)(params)
    for key, grad in grads.items():
        assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0, (name, key)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    for b in range(B):
        want = REFERENCES[name](p64, np.asarray(xs[b], np.float64))
        np.testing.assert_allclose(np.asarray(ys[b]), want, rtol=2e-5, atol=2e-5, err_msg=name)


def test_forget_bias_one_opens_the_forget_gate_at_init():
    cell = variants.make("np", H, forget_bias=1.0, initializer="orthogonal")
    params = cell.init(jax.random.PRNGKey(0), D)
    carry = cell.initial_carry(params)._replace(c=jnp.ones((H,)))
    new, _ = cell.step(params, carry, jnp.zeros((D,)))
    # zero biases, zero input, zero h: c_t = sigma(1) * c_{t-1} + 0.5 * tanh(0)
    np.testing.assert_allclose(np.asarray(new.c), np.full(H, sig(1.0)), rtol=1e-6)
