"""Drivers under hostile inputs: traced lengths outside [0, T], NaN/Inf padding, dtypes, T = 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxrnn
from jaxrnn.interop.torch import TorchLikeRNN, from_torch

B, T, D, H = 2, 5, 3, 4
XS = jax.random.normal(jax.random.PRNGKey(1), (B, T, D))
WILD = jnp.array([7, -2], jnp.int32)  # beyond T and negative: act as T and 0 under jit
CLAMPED = jnp.array([T, 0], jnp.int32)
SHORT = jnp.array([3, 1], jnp.int32)
# NaN and Inf past each sequence's length (SHORT): the padding a user's pipeline may hold.
DIRTY = XS.at[0, 3:].set(jnp.nan).at[1, 1:].set(jnp.inf)
CLEAN = jnp.where((jnp.arange(T)[None, :] < SHORT[:, None])[..., None], XS, 0.0)
CASES = [(jaxrnn.LSTM, "in_loop", None), (jaxrnn.LSTM, "hoisted", None),
         (jaxrnn.LSTM, "fused", None), (jaxrnn.LSTM, "hoisted", 2),
         (jaxrnn.GRU, "in_loop", None), (jaxrnn.GRU, "fused", None)]


def _cell_params(make):
    cell = make(H)
    return cell, cell.init(jax.random.PRNGKey(0), D)


def _close(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **(tol or dict(atol=1e-6)))


@pytest.mark.parametrize("make,strategy,remat", CASES)
def test_traced_lengths_beyond_t_act_as_t_and_negative_as_0(make, strategy, remat):
    cell, params = _cell_params(make)

    def run(x, n):
        return jaxrnn.scan(cell, params, x, lengths=n, reverse=True, strategy=strategy,
                           remat=remat)

    got = jax.jit(run)(XS, WILD)
    want = jax.jit(run)(XS, CLAMPED)
    _close(got, want)
    assert np.all(np.isfinite(np.asarray(got[0])))


@pytest.mark.parametrize("make", [jaxrnn.MinGRU, jaxrnn.LRU])
def test_associative_scan_traced_lengths_are_clamped(make):
    cell, params = _cell_params(make)

    def run(x, n):
        return jaxrnn.associative_scan(cell, params, x, lengths=n, reverse=True)

    run = jax.jit(run)
    _close(run(XS, WILD), run(XS, CLAMPED), atol=1e-5)


def test_layers_and_torch_interop_clamp_traced_lengths():
    rnn = jaxrnn.StackedRNN(jaxrnn.LSTM(H), num_layers=2, bidirectional=True)
    params = rnn.init(jax.random.PRNGKey(0), D)
    run = jax.jit(lambda x, n: rnn.apply(params, x, lengths=n))
    _close(run(XS, WILD), run(XS, CLAMPED))
    model = TorchLikeRNN(rnn, batch_first=True)
    run = jax.jit(lambda x, n: model.apply(params, x, lengths=n))
    _close(run(XS, WILD), run(XS, CLAMPED))


def test_concrete_lengths_out_of_range_still_raise():
    cell, params = _cell_params(jaxrnn.LSTM)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\] = \[0, 5\]; got values "
                                         r"in \[-2, 7\]"):
        jaxrnn.scan(cell, params, XS, lengths=WILD)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T\]"):
        jaxrnn.associative_scan(jaxrnn.MinGRU(H), jaxrnn.MinGRU(H).init(
            jax.random.PRNGKey(0), D), XS, lengths=WILD)


def _grads(run, params, xs):
    def loss(p, x):
        ys, final = run(p, x)
        return jnp.sum(ys) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(final))

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)


@pytest.mark.parametrize("make,strategy,remat", CASES)
def test_nan_and_inf_padding_never_reach_the_gradients(make, strategy, remat):
    cell, params = _cell_params(make)

    def run(p, x):
        return jaxrnn.scan(cell, p, x, lengths=SHORT, strategy=strategy, remat=remat)

    dirty = _grads(run, params, DIRTY)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(dirty))
    _close(dirty, _grads(run, params, CLEAN))  # the padding's values do not matter at all
    run = jax.jit(run)
    _close(run(params, DIRTY), run(params, CLEAN))


@pytest.mark.parametrize("make", [jaxrnn.MinLSTM, jaxrnn.LRU, jaxrnn.RGLRU])
def test_nan_padding_is_harmless_in_the_parallel_scan(make):
    cell, params = _cell_params(make)

    def run(p, x):
        return jaxrnn.associative_scan(cell, p, x, lengths=SHORT, reverse=True)

    dirty = _grads(run, params, DIRTY)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(dirty))
    _close(dirty, _grads(run, params, CLEAN), atol=1e-5)


def test_nan_padding_gradients_match_pytorch_packed_sequences():
    """PyTorch's pack_padded_sequence gives finite weight gradients on the same dirty input;
    jaxrnn gives the same gradients on every strategy."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(D, H, batch_first=True)
    model, params = from_torch(module)
    x = torch.tensor(np.asarray(DIRTY))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, SHORT.tolist(), batch_first=True)
    out, _ = module(packed)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    padded.sum().backward()
    want = {"w_ih": module.weight_ih_l0.grad, "w_hh": module.weight_hh_l0.grad,
            "b_ih": module.bias_ih_l0.grad, "b_hh": module.bias_hh_l0.grad}
    assert all(torch.isfinite(g).all() for g in want.values())
    cell = model.rnn.cell
    for strategy in ("in_loop", "hoisted", "fused"):
        def loss(p, strategy=strategy):
            return jnp.sum(jaxrnn.scan(cell, p, DIRTY, lengths=SHORT, strategy=strategy)[0])

        got = jax.jit(jax.grad(loss))(params["layers"][0]["fwd"])
        for name, grad in want.items():
            np.testing.assert_allclose(np.asarray(got[name]), grad.numpy(), atol=1e-5)


@pytest.mark.parametrize("strategy", ["in_loop", "hoisted", "fused"])
def test_dtype_rules_are_the_same_on_every_strategy(strategy):
    cell, params = _cell_params(jaxrnn.LSTM)
    half = jax.tree.map(lambda c: c.astype(jnp.float16), cell.initial_carry(params, (B,)))
    with pytest.raises(TypeError, match=r"jaxrnn.scan: carry.h has dtype float16; expected "
                                        r"float32, the dtype of cell.initial_carry\(params\)"):
        jaxrnn.scan(cell, params, XS, half, strategy=strategy)
    # NumPy float64 inputs: every strategy computes in the params' float32 and agrees
    ys, final = jaxrnn.scan(cell, params, np.asarray(XS, np.float64), strategy=strategy)
    assert ys.dtype == jnp.float32 and final.h.dtype == jnp.float32
    _close((ys, final), jaxrnn.scan(cell, params, XS, strategy="in_loop"))


def test_associative_scan_rejects_another_carry_dtype():
    cell, params = _cell_params(jaxrnn.MinGRU)
    half = jax.tree.map(lambda c: c.astype(jnp.float16), cell.initial_carry(params, (B,)))
    with pytest.raises(TypeError, match="carry.h has dtype float16; expected float32"):
        jaxrnn.associative_scan(cell, params, XS, half)


@pytest.mark.parametrize("make", [jaxrnn.MinGRU, jaxrnn.LRU])
def test_associative_scan_with_no_time_steps(make):
    cell, params = _cell_params(make)
    carry = jax.tree.map(lambda c: c + 0.5, cell.initial_carry(params, (B,)))
    ys, final = jaxrnn.associative_scan(cell, params, XS[:, :0], carry)
    want_ys, want_final = jaxrnn.scan(cell, params, XS[:, :0], carry)
    assert ys.shape == want_ys.shape == (B, 0, H) and ys.dtype == want_ys.dtype
    _close(final, want_final)
    ys, _ = jaxrnn.associative_scan(cell, params, jnp.zeros((0, B, D)), time_major=True)
    assert ys.shape == (0, B, H)


def test_a_reset_flag_on_a_padding_step_leaves_the_final_carry_alone():
    """Padding never changes the carry, a reset flag there included: the final carry is the
    one after step length - 1 on every driver."""
    cells = [jaxrnn.LSTM(4), jaxrnn.MinGRU(4), jaxrnn.MLSTM(4, num_heads=1)]
    for cell in cells:
        params = cell.init(jax.random.PRNGKey(0), 3)
        xs = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 3))
        lengths = jnp.array([4, 6])
        resets = jnp.zeros((2, 6), bool).at[0, 5].set(True)
        want = jaxrnn.scan(cell, params, xs[:1, :4])[1]
        runs = [jaxrnn.scan(cell, params, xs, lengths=lengths, resets=resets, strategy=s)
                for s in ("in_loop", "hoisted")]
        if jaxrnn.drivers.is_linear(cell):
            runs.append(jaxrnn.associative_scan(cell, params, xs, lengths=lengths, resets=resets))
        if jaxrnn.drivers.has_chunkwise_form(cell):
            runs.append(jaxrnn.chunkwise_scan(cell, params, xs, lengths=lengths, resets=resets,
                                              chunk_size=4))
        for _, final in runs:
            for got, ref in zip(jax.tree.leaves(final), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)
