"""strategy="cudnn": the packing for jax.experimental.rnn, checked on a CPU against lstm_ref.

cuDNN itself needs an NVIDIA GPU, which CI does not have. Here ``kernels.cudnn.lstm_call`` (the
one place that calls ``jax.experimental.rnn.lstm``) is replaced by JAX's reference for the same
flat weights (``unpack_lstm_weights`` + ``lstm_ref``), so the tests check everything jaxrnn does
around cuDNN: the weight layout, forget_bias folding, lengths (including 0), reversal, layouts,
and the gradients flowing back through the packing to jaxrnn's params. On a machine with an
NVIDIA GPU, ``test_real_cudnn_equals_the_per_step_cell`` runs the same checks through cuDNN
itself (``benchmarks/gpu_check.sh`` runs it).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn

import jaxrnn
from jaxrnn.drivers.strategy import resolve_strategy
from jaxrnn.kernels import cudnn


def _reference_call(x, h0, c0, weights, seq_lengths, input_size, hidden_size):
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size, 1, False)
    return rnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size,
                        hidden_size, 1, 0.0, False)


@pytest.fixture
def fake_gpu(monkeypatch):
    """cuDNN stood in by JAX's reference, and run on the CPU lowering too, so the cuDNN branch
    of jaxrnn.scan executes here."""
    monkeypatch.setattr(cudnn, "available", lambda: True)
    monkeypatch.setattr(cudnn, "PLATFORMS", ("cuda", "cpu"))
    monkeypatch.setattr(cudnn, "lstm_call", _reference_call)


def test_strategy_resolution_without_a_gpu():
    if jax.default_backend() == "gpu":
        pytest.skip("this checks the fallback on a machine without cuDNN")
    assert resolve_strategy("cudnn", jaxrnn.LSTM(4)) == "fused"
    assert resolve_strategy("cudnn", jaxrnn.GRU(4)) == "fused"
    assert resolve_strategy("cudnn", jaxrnn.LSTM(4, proj_size=2)) == "hoisted"


def test_strategy_resolution_with_a_gpu(monkeypatch):
    monkeypatch.setattr(cudnn, "available", lambda: True)

    def cudnn_on(cell, platform="cuda", **kw):
        return resolve_strategy("cudnn", cell, platform=platform, **kw)

    assert cudnn_on(jaxrnn.LSTM(4)) == "cudnn"
    assert cudnn_on(jaxrnn.LSTM(4, forget_bias=1.0, use_bias=False)) == "cudnn"
    assert cudnn_on(jaxrnn.GRU(4)) == "fused"  # cuDNN LSTM only
    assert cudnn_on(jaxrnn.LSTM(4, compute_dtype=jnp.bfloat16)) == "fused"
    assert cudnn_on(jaxrnn.LSTM(4), resets=True) == "hoisted"
    for other in ("rocm", "tpu", "cpu"):  # no cuDNN there: the fused kernel
        assert cudnn_on(jaxrnn.LSTM(4), platform=other) == "fused"
    for platform in ("cpu", "cuda", "rocm", "tpu"):  # opt-in only
        assert resolve_strategy("auto", jaxrnn.LSTM(4), platform=platform) != "cudnn"


def test_packed_weights_follow_the_documented_layout():
    cell = jaxrnn.LSTM(3, forget_bias=0.5)
    params = cell.init(jax.random.PRNGKey(0), 2)
    flat = cudnn.pack_weights(cell, params)
    assert flat.shape == (rnn.get_num_params_in_lstm(2, 3, 1, False),)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, 2, 3, 1, False)
    np.testing.assert_array_equal(w_ih[0], params["w_ih"])
    np.testing.assert_array_equal(w_hh[0], params["w_hh"])
    np.testing.assert_array_equal(b_ih[0], params["b_ih"])
    np.testing.assert_allclose(b_hh[0], params["b_hh"] + jnp.repeat(jnp.eye(4)[1] * 0.5, 3))


OPTIONS = [
    dict(),
    dict(reverse=True, forget_bias=1.0),
    dict(time_major=True, use_bias=False),
]


def _check_cudnn_against_the_per_step_cell(options, rtol, atol):
    options = dict(options)
    reverse = options.pop("reverse", False)
    time_major = options.pop("time_major", False)
    cell = jaxrnn.LSTM(6, **options)
    params = cell.init(jax.random.PRNGKey(0), 4)
    b, t = 3, 5
    xs = jax.random.normal(jax.random.PRNGKey(1), (t, b, 4) if time_major else (b, t, 4))
    carry0 = jax.tree.map(lambda c: 0.3 * jax.random.normal(jax.random.PRNGKey(2), c.shape),
                          cell.initial_carry(params, (b,)))
    lengths = jnp.array([5, 2, 0])

    def loss(p, x, c0, strategy):
        ys, fin = jaxrnn.scan(cell, p, x, c0, lengths=lengths, reverse=reverse,
                              time_major=time_major, strategy=strategy)
        return jnp.sum(ys * jnp.cos(ys)) + jnp.sum(jnp.sin(fin.h)) + jnp.sum(fin.c ** 2), (ys, fin)

    assert resolve_strategy("cudnn", cell, platform="cuda") == "cudnn"
    grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
    (v_c, (ys_c, fin_c)), g_c = grad(params, xs, carry0, "cudnn")
    (v_p, (ys_p, fin_p)), g_p = grad(params, xs, carry0, "in_loop")
    for got, want in zip(jax.tree.leaves((v_c, ys_c, fin_c, g_c)),
                         jax.tree.leaves((v_p, ys_p, fin_p, g_p)), strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    # the length-0 sequence: zero outputs and the initial carry
    np.testing.assert_array_equal(ys_c[:, 2] if time_major else ys_c[2], 0.0)
    np.testing.assert_array_equal(fin_c.h[2], carry0.h[2])


@pytest.mark.parametrize("options", OPTIONS)
def test_cudnn_path_equals_the_per_step_cell(fake_gpu, options):
    _check_cudnn_against_the_per_step_cell(options, rtol=2e-5, atol=2e-6)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs an NVIDIA GPU")
@pytest.mark.parametrize("options", OPTIONS)
def test_real_cudnn_equals_the_per_step_cell(options):
    """The same check through the real cuDNN call; float32 matmuls on both sides (no TF32),
    with a tolerance for cuDNN's own order of summation."""
    with jax.default_matmul_precision("highest"):
        _check_cudnn_against_the_per_step_cell(options, rtol=1e-4, atol=1e-5)


def test_cudnn_with_h_mask_runs_fused(fake_gpu, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("cuDNN was called with an h_mask")

    monkeypatch.setattr(cudnn, "lstm_call", refuse)
    cell = jaxrnn.LSTM(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jnp.ones((2, 3, 3))
    mask = jnp.ones((2, 4))
    got = jaxrnn.scan(cell, params, xs, strategy="cudnn", h_mask=mask)[0]
    np.testing.assert_allclose(got, jaxrnn.scan(cell, params, xs, strategy="in_loop")[0],
                               rtol=1e-5, atol=1e-6)
