"""Independent float64 numpy transcriptions of the modern cells' published equations.

Each reads the weights out of the documented parameter layout and loops over time, unstabilised
where the cell stabilises (xLSTM's exponential gates): the stabiliser must not change the
function. Used by tests/test_modern_cells.py and tests/test_variants_equations.py.
"""

import numpy as np


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
