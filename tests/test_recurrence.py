"""jaxrnn.scan: lengths, reverse, resets, strategies and AD against plain formulations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

D, H, B, T = 3, 4, 3, 6
LENGTHS = jnp.array([6, 2, 0], dtype=jnp.int32)


CELLS = {
    "lstm": jaxrnn.LSTM(H, forget_bias=1.0),
    "gru": jaxrnn.GRU(H),
    "gru_before": jaxrnn.GRU(H, reset_after=False),
}


@pytest.fixture(scope="module", params=sorted(CELLS))
def setup(request):
    cell = CELLS[request.param]
    params = cell.init(jax.random.PRNGKey(0), D)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, D))
    return cell, params, xs


def _loop(cell, params, x, carry=None):
    """A plain Python loop over step for ONE sequence x [t, D]."""
    carry = cell.initial_carry(params) if carry is None else carry
    ys = []
    for t in range(x.shape[0]):
        carry, y = cell.step(params, carry, x[t])
        ys.append(y)
    out = jnp.stack(ys) if ys else jnp.zeros((0, cell.output_size))
    return out, carry


def _assert_tree_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_match_truncated_sequences(setup, reverse):
    cell, params, xs = setup
    ys, final = jaxrnn.scan(cell, params, xs, lengths=LENGTHS, reverse=reverse)
    for b in range(B):
        n = int(LENGTHS[b])
        x = xs[b, :n][::-1] if reverse else xs[b, :n]
        want_y, want_c = _loop(cell, params, x)
        if reverse:
            want_y = want_y[::-1]
        np.testing.assert_allclose(ys[b, :n], want_y, rtol=1e-5, atol=1e-6)
        assert float(jnp.abs(ys[b, n:]).max(initial=0.0)) == 0.0  # exactly zero past the length
        _assert_tree_close(jax.tree.map(lambda c, b=b: c[b], final), want_c)


def test_length_zero_returns_initial_carry(setup):
    cell, params, xs = setup
    carry0 = jax.tree.map(
        lambda c: jax.random.normal(jax.random.PRNGKey(3), c.shape),
        cell.initial_carry(params, (B,)),
    )
    _, final = jaxrnn.scan(cell, params, xs, carry0, lengths=LENGTHS)
    _assert_tree_close(jax.tree.map(lambda c: c[2], final), jax.tree.map(lambda c: c[2], carry0))


@pytest.mark.parametrize("reverse", [False, True])
def test_resets_equal_separate_segments(setup, reverse):
    cell, params, xs = setup
    resets = jnp.zeros((B, T), bool).at[:, 0].set(True).at[0, 3].set(True).at[1, 2].set(True)
    ys, _ = jaxrnn.scan(cell, params, xs, resets=resets, reverse=reverse)
    for b in range(B):
        starts = [int(t) for t in np.nonzero(np.asarray(resets[b]))[0]] + [T]
        for s, e in zip(starts[:-1], starts[1:], strict=True):
            seg = xs[b, s:e][::-1] if reverse else xs[b, s:e]
            want, _ = _loop(cell, params, seg)
            np.testing.assert_allclose(
                ys[b, s:e], want[::-1] if reverse else want, rtol=1e-5, atol=1e-6
            )


def test_strategies_agree_with_lengths_resets_reverse_and_masks(setup):
    cell, params, xs = setup
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True)
    mask = jax.random.bernoulli(jax.random.PRNGKey(4), 0.7, (B, cell.output_size)).astype(
        jnp.float32
    )
    kw = dict(lengths=LENGTHS, resets=resets, reverse=True, h_mask=mask)
    a = jaxrnn.scan(cell, params, xs, strategy="in_loop", **kw)
    b = jaxrnn.scan(cell, params, xs, strategy="hoisted", unroll=2, **kw)
    _assert_tree_close(a, b)

    def loss(p, strategy):
        ys, fin = jaxrnn.scan(cell, p, xs, strategy=strategy, **kw)
        return jnp.sum(ys**2) + jnp.sum(fin.h)

    _assert_tree_close(jax.grad(loss)(params, "in_loop"), jax.grad(loss)(params, "hoisted"))


@pytest.mark.parametrize("reverse", [False, True])
def test_fused_equals_plain_values_and_gradients(setup, reverse):
    """The custom-VJP path against the per-step formulation: outputs, carries, all gradients."""
    cell, params, xs = setup
    mask = jax.random.bernoulli(jax.random.PRNGKey(4), 0.7, (B, cell.output_size)).astype(
        jnp.float32
    )
    carry0 = jax.tree.map(
        lambda c: jax.random.normal(jax.random.PRNGKey(5), c.shape),
        cell.initial_carry(params, (B,)),
    )
    kw = dict(lengths=LENGTHS, reverse=reverse, h_mask=mask)

    def loss(p, x, c0, strategy):
        ys, fin = jaxrnn.scan(cell, p, x, c0, strategy=strategy, **kw)
        return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(f)) for f in jax.tree.leaves(fin))

    grad = jax.value_and_grad(loss, argnums=(0, 1, 2))
    _assert_tree_close(grad(params, xs, carry0, "fused"), grad(params, xs, carry0, "in_loop"))
    _assert_tree_close(
        jaxrnn.scan(cell, params, xs, carry0, strategy="fused", **kw),
        jaxrnn.scan(cell, params, xs, carry0, strategy="in_loop", **kw),
    )


@pytest.mark.parametrize("make", [jaxrnn.LSTM, jaxrnn.GRU])
def test_fused_weight_gradients_through_the_transposed_copy(make):
    """With at least the CPU's tn_copy rows (T*B) the fused backward makes a row-major copy of
    the gate gradients' transpose for the weight gradients (jaxrnn.kernels.matmul): the same
    values as the per-step formulation, with lengths; the copy is in the CPU lowering only."""
    from jaxrnn.tuning import TUNING

    cell = make(5)
    b, t = 64, 33
    assert b * t >= TUNING["cpu"].tn_copy[0]
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(jax.random.PRNGKey(1), (b, t, 3))
    lengths = jax.random.randint(jax.random.PRNGKey(2), (b,), 0, t + 1)

    def loss(p, x, strategy):
        ys, fin = jaxrnn.scan(cell, p, x, lengths=lengths, strategy=strategy)
        return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(f)) for f in jax.tree.leaves(fin))

    grad = jax.grad(loss, argnums=(0, 1))
    _assert_tree_close(grad(params, xs, "fused"), grad(params, xs, "in_loop"))
    fn = jax.jit(lambda p, x: grad(p, x, "fused"))
    assert "jaxrnn_per_platform" in str(jax.make_jaxpr(fn)(params, xs))  # chosen when lowered
    for platform, copied in (("cpu", True), ("cuda", False), ("tpu", False)):
        module = jax.export.export(fn, platforms=(platform,))(params, xs).mlir_module()
        assert ("optimization_barrier" in module) == copied, platform


@pytest.mark.parametrize("make", [jaxrnn.LSTM, jaxrnn.GRU])
def test_fused_inference_projects_in_chunks(make, monkeypatch):
    """Without gradients the fused forward projects the input a chunk of time steps at a time on
    the platforms whose tuning sets inference_chunk_bytes (the CPU): chunks of 3 steps over
    T = 8 (two chunks and a tail of 2), with lengths, h_mask and reverse, give the per-step
    cell's outputs and carries; gradients still go through the one large projection; a cuda
    lowering projects all steps at once."""
    import dataclasses

    from jaxrnn import tuning
    from jaxrnn.kernels import fused

    cell = make(5)
    b, t, d = 4, 8, 3
    # 3 steps' projection per chunk: bytes = 4 * b * (gates * H) * 3
    chunk_bytes = 4 * b * cell.num_gates * 5 * 3
    monkeypatch.setitem(tuning.TUNING, "cpu", dataclasses.replace(
        tuning.TUNING["cpu"], inference_chunk_bytes=chunk_bytes))
    assert fused.primal_chunk(t, b, cell.num_gates * 5, chunk_bytes) == 3
    assert fused.primal_chunk(t, b, cell.num_gates * 5, None) == 0  # no chunking on this platform
    assert fused.primal_chunk(2, b, cell.num_gates * 5, chunk_bytes) == 0  # one chunk: every step
    assert fused.primal_chunk(t, 0, cell.num_gates * 5, chunk_bytes) == 0  # an empty batch
    params = cell.init(jax.random.PRNGKey(0), d)
    xs = jax.random.normal(jax.random.PRNGKey(1), (b, t, d))
    mask = jax.random.bernoulli(jax.random.PRNGKey(4), 0.7, (b, 5)).astype(jnp.float32)
    for kw in ({}, dict(lengths=jnp.array([8, 5, 1, 0]), h_mask=mask, reverse=True)):
        run = jax.jit(lambda p, x, kw=kw: jaxrnn.scan(cell, p, x, strategy="fused", **kw))
        _assert_tree_close(run(params, xs), jaxrnn.scan(cell, params, xs, strategy="in_loop", **kw))
    empty = jaxrnn.scan(cell, params, xs[:0], strategy="fused")
    assert empty[0].shape == (0, t, 5)
    chunked = f"tensor<2x3x{b}x{d}xf32>"  # the input, in two chunks of 3 steps
    fn = jax.jit(lambda p, x: jaxrnn.scan(cell, p, x, strategy="fused"))
    assert "jaxrnn_per_platform" in str(fn.trace(params, xs).jaxpr)  # chosen when lowered
    for platform, want in (("cpu", True), ("cuda", False)):
        module = jax.export.export(fn, platforms=(platform,))(params, xs).mlir_module()
        assert (chunked in module) == want, platform
    grads = jax.jit(jax.grad(lambda p, x: jnp.sum(jaxrnn.scan(cell, p, x, strategy="fused")[0])))
    assert chunked not in jax.export.export(grads, platforms=("cpu",))(params, xs).mlir_module()


@pytest.mark.parametrize("make", [jaxrnn.LSTM, jaxrnn.GRU])
def test_fused_bfloat16_matches_plain_bfloat16(make):
    """compute_dtype=bfloat16 on the fused path: the same bf16-operand, f32-accumulate contract as
    the per-step cell (values and every gradient), states and outputs in float32."""
    cell = make(8, compute_dtype=jnp.bfloat16)
    params = cell.init(jax.random.PRNGKey(0), 5)
    xs = jax.random.normal(jax.random.PRNGKey(1), (3, 7, 5))
    carry0 = cell.initial_carry(params, (3,))

    def loss(p, x, strategy):
        ys, fin = jaxrnn.scan(cell, p, x, carry0, strategy=strategy, lengths=jnp.array([7, 4, 0]))
        assert ys.dtype == jnp.float32 and all(f.dtype == jnp.float32 for f in fin)
        return jnp.sum(ys * jnp.cos(ys)) + jnp.sum(jnp.sin(fin.h))

    grad = jax.value_and_grad(loss, argnums=(0, 1))
    (v_f, g_f), (v_p, g_p) = grad(params, xs, "fused"), grad(params, xs, "in_loop")
    np.testing.assert_allclose(v_f, v_p, rtol=1e-2)
    for a, b in zip(jax.tree.leaves(g_f), jax.tree.leaves(g_p), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_allclose(a, b, atol=2e-2 * float(jnp.abs(b).max()) + 1e-6)
    # bf16 is really used: the outputs differ from the float32 cell's by more than f32 rounding
    ys16 = jaxrnn.scan(cell, params, xs, strategy="fused")[0]
    ys32 = jaxrnn.scan(make(8), params, xs, strategy="fused")[0]
    assert 1e-5 < float(jnp.abs(ys16 - ys32).max()) < 5e-2


def test_auto_strategy_choice():
    from jaxrnn.drivers.strategy import resolve_strategy

    for platform in ("cpu", "cuda", "rocm", "tpu"):
        def auto(cell, platform=platform, **kw):
            return resolve_strategy("auto", cell, platform=platform, **kw)

        assert auto(jaxrnn.LSTM(4)) == "fused"
        assert auto(jaxrnn.GRU(4)) == "fused"
        assert auto(jaxrnn.LSTM(4, proj_size=2)) == ("in_loop" if platform == "cpu" else "hoisted")
        assert auto(jaxrnn.LSTM(256), xs_shape=(8, 4096, 256)) == "fused"
        # large float32 batches on a CPU: thick per-step matmuls, in_loop; GPUs and TPUs fuse
        wide = "in_loop" if platform == "cpu" else "fused"
        assert auto(jaxrnn.LSTM(512), xs_shape=(256, 100, 512)) == wide
        assert auto(jaxrnn.LSTM(256), xs_shape=(128, 100, 256)) == "fused"
        assert auto(jaxrnn.LSTM(256), xs_shape=(129, 100, 256)) == wide
        assert auto(jaxrnn.GRU(256), xs_shape=(64, 100, 256)) == wide
        assert auto(jaxrnn.GRU(256), xs_shape=(32, 100, 256)) == "fused"
        assert auto(jaxrnn.GRU(8), xs_shape=(100, 256, 8), time_major=True) == wide
        low = jaxrnn.LSTM(512, compute_dtype=jnp.bfloat16)  # bf16: fused at any batch
        assert auto(low, xs_shape=(256, 100, 512)) == "fused"
        # differentiated (training): the GRU fuses at any batch on every platform; the LSTM
        # keeps the CPU's limit and a cell without a fused kernel the CPU's in_loop
        assert auto(jaxrnn.GRU(256), xs_shape=(256, 100, 256), differentiated=True) == "fused"
        assert auto(jaxrnn.LSTM(512), xs_shape=(256, 100, 512), differentiated=True) == wide
        not_fused = "in_loop" if platform == "cpu" else "hoisted"
        assert auto(jaxrnn.LSTM(4, proj_size=2), differentiated=True) == not_fused
        assert auto(jaxrnn.MinGRU(4), remat=True, differentiated=True) == not_fused
    assert resolve_strategy("fused", jaxrnn.GRU(4, reset_after=False)) == "hoisted"
    assert resolve_strategy("fused", jaxrnn.LSTM(4), resets=True) == "hoisted"
    with pytest.raises(ValueError, match="strategy='fast'; expected"):
        resolve_strategy("fast", jaxrnn.LSTM(4))


def test_time_major_and_forward_mode(setup):
    cell, params, xs = setup
    ys, fin = jaxrnn.scan(cell, params, xs)
    ys_tm, fin_tm = jaxrnn.scan(cell, params, jnp.swapaxes(xs, 0, 1), time_major=True)
    np.testing.assert_allclose(ys, jnp.swapaxes(ys_tm, 0, 1), rtol=1e-6)
    tangent = jnp.ones_like(xs)

    def f(x):  # forward mode needs a non-custom-VJP strategy
        return jaxrnn.scan(cell, params, x, lengths=LENGTHS, strategy="in_loop")[0]

    _, jvp_out = jax.jvp(f, (xs,), (tangent,))
    eps = 1e-3
    fd = (f(xs + eps * tangent) - f(xs - eps * tangent)) / (2 * eps)
    np.testing.assert_allclose(jvp_out, fd, atol=2e-3)


def test_under_jit_lengths_are_traced():
    cell = jaxrnn.GRU(H)
    params = cell.init(jax.random.PRNGKey(0), D)
    xs = jnp.ones((2, T, D))
    run = jax.jit(lambda x, n: jaxrnn.scan(cell, params, x, lengths=n)[0])
    out = run(xs, jnp.array([T, 1], dtype=jnp.int32))
    assert float(jnp.abs(out[1, 1:]).max()) == 0.0


def test_forward_mode_through_the_fused_kernel_names_the_fix():
    cell = jaxrnn.LSTM(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jnp.ones((2, 5, 3))
    with pytest.raises(TypeError, match=r"strategy='auto' runs the fused kernel.*"
                                        r"strategy='in_loop'"):
        jax.jvp(lambda x: jaxrnn.scan(cell, params, x)[0], (xs,), (xs,))
    out, _ = jax.jvp(lambda x: jaxrnn.scan(cell, params, x, strategy="in_loop")[0], (xs,), (xs,))
    assert out.shape == (2, 5, 4)
