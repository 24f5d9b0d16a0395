"""Rematerialisation (``remat=k``): the same function and gradients in less memory, no unrolling.

Every check compares ``remat=k`` with ``remat=None`` on the same weights (outputs, final carry,
and gradients with respect to params, inputs and the initial carry), with lengths, reverse,
resets, variational masks and a T that k does not divide.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.drivers.strategy import resolve_strategy

D, H, B, T = 3, 4, 3, 7
LENGTHS = jnp.array([7, 3, 0], dtype=jnp.int32)
RESETS = jnp.zeros((B, T), bool).at[:, 0].set(True).at[0, 4].set(True).at[1, 2].set(True)

MASK = object()  # stands for a variational h_mask, drawn in the test
CELLS = {"lstm": jaxrnn.LSTM(H, forget_bias=1.0), "gru": jaxrnn.GRU(H)}

# Each case: the scan keywords, the strategy of the reference (remat=None) and of the remat run.
# "auto" without remat runs the fused custom-VJP path for both cells, so the first case also
# checks remat against the fused path.
CASES = {
    "lengths_reverse": (dict(lengths=LENGTHS, reverse=True), "auto", "auto"),
    "resets_mask": (dict(resets=RESETS, h_mask=MASK, unroll=2), "in_loop", "hoisted"),
    "everything_reversed": (
        dict(lengths=LENGTHS, resets=RESETS, reverse=True, h_mask=MASK), "hoisted", "in_loop"
    ),
}


def _assert_tree_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def _inputs(cell):
    params = cell.init(jax.random.PRNGKey(0), D)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, D))
    carry0 = jax.tree.map(
        lambda c: jax.random.normal(jax.random.PRNGKey(2), c.shape),
        cell.initial_carry(params, (B,)),
    )
    mask = jax.random.bernoulli(jax.random.PRNGKey(3), 0.7, (B, H)).astype(jnp.float32) / 0.7
    return params, xs, carry0, mask


def _value_and_grads(cell, kw, strategy, remat):
    """jit(value_and_grad) of a loss touching every output and the final carry; also (ys, final)."""

    def run(p, x, c0):
        return jaxrnn.scan(cell, p, x, c0, strategy=strategy, remat=remat, **kw)

    def loss(p, x, c0):
        ys, fin = run(p, x, c0)
        return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(jnp.sin(f)) for f in jax.tree.leaves(fin))

    return jax.jit(lambda p, x, c0: (run(p, x, c0), jax.value_and_grad(loss, (0, 1, 2))(p, x, c0)))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(CELLS))
def test_remat_equals_plain_values_and_gradients(name, case):
    cell = CELLS[name]
    params, xs, carry0, mask = _inputs(cell)
    kw, plain_strategy, remat_strategy = CASES[case]
    kw = {k: (mask if v is MASK else v) for k, v in kw.items()}
    want = _value_and_grads(cell, kw, plain_strategy, None)(params, xs, carry0)
    got = _value_and_grads(cell, kw, remat_strategy, 3)(params, xs, carry0)  # 7 = 2 * 3 + 1
    _assert_tree_close(got, want)
    if "lengths" in kw:  # length 0: outputs exactly zero, as without remat
        (ys, _), _ = got
        assert float(jnp.abs(ys[2]).max()) == 0.0


@pytest.mark.parametrize("remat", [1, 7, 10])
def test_remat_chunk_lengths_at_the_edges(remat):
    """k = 1 (every carry stored), k = T (one chunk, no outer loop), k > T (one short chunk)."""
    cell = CELLS["lstm"]
    params, xs, carry0, _ = _inputs(cell)
    kw = dict(lengths=LENGTHS)
    want = _value_and_grads(cell, kw, "in_loop", None)(params, xs, carry0)
    _assert_tree_close(_value_and_grads(cell, kw, "in_loop", remat)(params, xs, carry0), want)


def test_stacked_rnn_with_remat_equals_without():
    base = dict(bidirectional=True, recurrent_dropout=0.3)
    plain = jaxrnn.StackedRNN(jaxrnn.LSTM(H), **base)
    lean = jaxrnn.StackedRNN(jaxrnn.LSTM(H), remat=2, **base)
    params = plain.init(jax.random.PRNGKey(0), D)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, D))
    key = jax.random.PRNGKey(4)

    def make(model):
        def loss(p, x):
            ys, state = model.apply(p, x, lengths=LENGTHS, key=key, train=True)
            return jnp.sum(ys**2) + sum(jnp.sum(s) for s in jax.tree.leaves(state)), (ys, state)

        return jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))

    _assert_tree_close(make(lean)(params, xs), make(plain)(params, xs))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_bad_remat_is_rejected_with_a_message(bad):
    cell = CELLS["gru"]
    params, xs, _, _ = _inputs(cell)
    expected = f"remat={bad!r}; expected None .* or a positive integer"
    with pytest.raises(ValueError, match="jaxrnn.scan: " + expected):
        jaxrnn.scan(cell, params, xs, remat=bad)
    with pytest.raises(ValueError, match="StackedRNN: " + expected):
        jaxrnn.StackedRNN(cell, remat=bad)


def test_remat_never_runs_the_fused_path():
    lstm = jaxrnn.LSTM(4)
    assert resolve_strategy("fused", lstm, remat=True) == "hoisted"
    assert resolve_strategy("auto", lstm, remat=True) in ("in_loop", "hoisted")
    assert resolve_strategy("auto", lstm, remat=False) == "fused"


def test_program_size_does_not_grow_with_sequence_length():
    """No unrolling over time: the lowered gradient program has as many lines at T = 64 as at
    T = 1024 (one outer and one inner loop, forward and backward), and a tail chunk adds a fixed
    amount."""
    cell = CELLS["lstm"]
    params = cell.init(jax.random.PRNGKey(0), D)

    def lines(steps):
        def loss(p, x):
            return jnp.sum(jaxrnn.scan(cell, p, x, strategy="in_loop", remat=16)[0] ** 2)

        xs = jax.ShapeDtypeStruct((B, steps, D), jnp.float32)
        return len(jax.jit(jax.grad(loss, (0, 1))).lower(params, xs).as_text().splitlines())

    assert lines(64) == lines(1024)
    assert lines(64 + 5) == lines(1024 + 5)


def test_remat_shrinks_compiled_memory():
    """XLA's own buffer assignment: temp memory of the training step with and without remat."""
    batch, steps, hidden = 2, 512, 32
    cell = jaxrnn.LSTM(hidden)
    params = cell.init(jax.random.PRNGKey(0), hidden)
    xs = jnp.ones((batch, steps, hidden))

    def temp_bytes(remat):
        def loss(p, x):
            return jnp.mean(jaxrnn.scan(cell, p, x, strategy="in_loop", remat=remat)[0] ** 2)

        analysis = jax.jit(jax.grad(loss, (0, 1))).lower(params, xs).compile().memory_analysis()
        if analysis is None or getattr(analysis, "temp_size_in_bytes", None) is None:
            pytest.skip(f"memory_analysis() reports no temp size on {jax.default_backend()}")
        return analysis.temp_size_in_bytes

    plain, lean = temp_bytes(None), temp_bytes(16)
    # Measured on a CPU: about 1.9 MB without remat, 0.4 MB with remat=16 (of which ys and its
    # cotangent, B*T*H floats each, are 0.26 MB whatever the strategy).
    assert lean < 0.4 * plain, (lean, plain)
