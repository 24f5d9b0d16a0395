"""jaxrnn.interop.flax_modules and flax_convert: linen/nnx adapters and weight conversion."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxrnn
from jaxrnn import interop as jflax

B, T, D, H = 3, 6, 5, 4
TOL = dict(rtol=1e-5, atol=1e-5)


def close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **TOL), a, b)


# Random values come from numpy and shapes from jax.eval_shape: compiling flax's initialisers
# (orthogonal = QR) and one tiny program per eager op would be most of this file's run time.


def random_like(shapes, seed, scale=0.5):
    """Every leaf random (biases too, so that a dropped bias cannot pass unnoticed)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes
    )


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    xs, h0 = rng.standard_normal((B, T, D)), rng.standard_normal((B, H))
    return jnp.asarray(xs, jnp.float32), jnp.asarray(h0, jnp.float32)


def flax_params(flax_cell, seed):
    carry = jax.eval_shape(lambda k: flax_cell.initialize_carry(k, (B, D)), jax.random.key(0))
    x = jax.ShapeDtypeStruct((B, D), jnp.float32)
    return random_like(jax.eval_shape(flax_cell.init, jax.random.key(0), carry, x), seed)["params"]


def jaxrnn_params(cell, seed):
    init = functools.partial(cell.init, input_size=D)
    return random_like(jax.eval_shape(init, jax.random.key(0)), seed)


def run_flax_rnn(flax_cell, params, xs, carry):
    rnn = nn.RNN(flax_cell, return_carry=True)
    return rnn.apply({"params": {"cell": params}}, xs, initial_carry=carry)


def jaxrnn_step(cell, params, carry, x):
    return jax.vmap(cell.step, in_axes=(None, 0, 0))(params, carry, x)


LSTM_CELLS = [nn.LSTMCell, nn.OptimizedLSTMCell]


@pytest.mark.parametrize("flax_cls", LSTM_CELLS, ids=lambda c: c.__name__)
def test_lstm_from_flax_step_and_sequence(flax_cls):
    flax_cell = flax_cls(H)
    fp = flax_params(flax_cell, 1)
    cell = jaxrnn.LSTM(H)
    xs, h0 = inputs()
    c0 = -0.5 * h0
    assert jax.tree.map(jnp.shape, jflax.from_flax_lstm(fp)) == {
        "w_ih": (4 * H, D), "w_hh": (4 * H, H), "b_ih": (4 * H,), "b_hh": (4 * H,),
    }

    @jax.jit
    def both(fp, xs, c0, h0):
        params = jflax.from_flax_lstm(fp)
        carry = jaxrnn.LSTMState(h=h0, c=c0)
        f_carry, f_y = flax_cell.apply({"params": fp}, (c0, h0), xs[:, 0])
        j_carry, j_y = jaxrnn_step(cell, params, carry, xs[:, 0])
        f_step = (jflax.lstm_carry_from_flax(f_carry), f_y)
        f_final, f_ys = run_flax_rnn(flax_cell, fp, xs, (c0, h0))
        j_ys, j_final = jaxrnn.scan(cell, params, xs, carry)
        f_seq = (jflax.lstm_carry_from_flax(f_final), f_ys)
        return (f_step, f_seq), ((j_carry, j_y), (j_final, j_ys))

    flax_out, jaxrnn_out = both(fp, xs, c0, h0)
    close(flax_out, jaxrnn_out)


def test_lstm_forget_bias_is_folded_in():
    flax_cell = nn.LSTMCell(H)
    fp = flax_params(flax_cell, 2)
    cell = jaxrnn.LSTM(H, forget_bias=1.0)
    params = jflax.from_flax_lstm(fp, forget_bias=1.0)
    xs, _ = inputs(2)
    _, f_ys = jax.jit(lambda p, x: run_flax_rnn(flax_cell, p, x, None))(fp, xs)
    close(f_ys, jax.jit(lambda p, x: jaxrnn.scan(cell, p, x)[0])(params, xs))
    close(jflax.to_flax_lstm(params, cell), fp)


def test_lstm_gradients_equal():
    flax_cell = nn.LSTMCell(H)
    fp = flax_params(flax_cell, 3)
    xs, _ = inputs(3)
    cell = jaxrnn.LSTM(H)

    def flax_loss(p, x):
        return jnp.sum(jnp.sin(run_flax_rnn(flax_cell, p, x, None)[1]))

    def jaxrnn_loss(p, x):
        return jnp.sum(jnp.sin(jaxrnn.scan(cell, jflax.from_flax_lstm(p), x)[0]))

    f_loss, f_grads = jax.jit(jax.value_and_grad(flax_loss, (0, 1)))(fp, xs)
    j_loss, j_grads = jax.jit(jax.value_and_grad(jaxrnn_loss, (0, 1)))(fp, xs)
    close(f_loss, j_loss)
    close(f_grads, j_grads)


def test_gru_from_flax_step_and_sequence():
    flax_cell = nn.GRUCell(H)
    fp = flax_params(flax_cell, 4)
    cell = jaxrnn.GRU(H, reset_after=True)
    xs, h0 = inputs(4)

    @jax.jit
    def both(fp, xs, h0):
        params = jflax.from_flax_gru(fp)
        f_step = flax_cell.apply({"params": fp}, h0, xs[:, 0])
        j_carry, j_y = jaxrnn_step(cell, params, jaxrnn.GRUState(h=h0), xs[:, 0])
        f_seq = run_flax_rnn(flax_cell, fp, xs, h0)
        j_ys, j_final = jaxrnn.scan(cell, params, xs, jaxrnn.GRUState(h=h0))
        return (f_step, f_seq), ((j_carry.h, j_y), (j_final.h, j_ys))

    flax_out, jaxrnn_out = both(fp, xs, h0)
    close(flax_out, jaxrnn_out)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_to_flax_from_random_jaxrnn_params(kind):
    # jaxrnn has two biases per gate where flax has one; to_flax must fold them exactly.
    if kind == "lstm":
        cell, flax_cell = jaxrnn.LSTM(H, forget_bias=0.5), nn.OptimizedLSTMCell(H)
        to_flax, from_flax = jflax.to_flax_lstm, jflax.from_flax_lstm
        flax_carry = lambda h: (jnp.zeros_like(h), h)  # noqa: E731
    else:
        cell, flax_cell = jaxrnn.GRU(H), nn.GRUCell(H)
        to_flax, from_flax = jflax.to_flax_gru, jflax.from_flax_gru
        flax_carry = lambda h: h  # noqa: E731
    params = jaxrnn_params(cell, 5)
    xs, h0 = inputs(5)
    kwargs = {"forget_bias": cell.forget_bias} if kind == "lstm" else {}

    @jax.jit
    def run(params, xs, h0):
        carry = cell.initial_carry(params, (B,))._replace(h=h0)
        fp = to_flax(params, cell)
        _, f_ys = run_flax_rnn(flax_cell, fp, xs, flax_carry(h0))
        # and back: same layout, same function (the biases may be redistributed)
        back = from_flax({"params": fp}, **kwargs)
        return f_ys, jaxrnn.scan(cell, params, xs, carry)[0], jaxrnn.scan(cell, back, xs, carry)[0]

    f_ys, j_ys, back_ys = run(params, xs, h0)
    close(f_ys, j_ys)
    close(back_ys, j_ys)


@pytest.mark.parametrize(
    "cell", [jaxrnn.LSTM(H), jaxrnn.GRU(H), jaxrnn.Elman(H)], ids=lambda c: type(c).__name__
)
def test_cell_module_in_nn_rnn_equals_scan(cell):
    xs, _ = inputs(7)
    layer = nn.RNN(jflax.CellModule(cell), return_carry=True)
    shapes = jax.eval_shape(layer.init, jax.random.key(0), xs)
    assert shapes == {"params": {"cell": {"cell": jax.eval_shape(
        functools.partial(cell.init, input_size=D), jax.random.key(0)
    )}}}
    variables = random_like(shapes, 8)
    # seq_lengths: flax leaves outputs past a length unzeroed, so compare the valid part only;
    # flax picks the carry at index length - 1, wrong for length 0 (jaxrnn returns carry0).
    lengths = jnp.array([T, 2, 1], jnp.int32)

    @jax.jit
    def both(variables, xs, lengths):
        params = variables["params"]["cell"]["cell"]
        full = layer.apply(variables, xs), jaxrnn.scan(cell, params, xs)[::-1]
        final, ys = layer.apply(variables, xs, seq_lengths=lengths)
        valid = (jnp.arange(T)[None, :] < lengths[:, None])[..., None]
        padded = (final, jnp.where(valid, ys, 0.0))
        return full, (padded, jaxrnn.scan(cell, params, xs, lengths=lengths)[::-1])

    for flax_out, jaxrnn_out in both(variables, xs, lengths):
        close(flax_out, jaxrnn_out)


def test_cell_module_several_batch_axes_and_initialize_carry():
    cell = jaxrnn.LSTM(H)
    module = jflax.CellModule(cell)
    assert module.num_feature_axes == 1
    xs, _ = inputs(9)
    x = xs[:, :2].reshape(2, B, D)
    carry = module.initialize_carry(jax.random.key(0), x.shape)
    assert jax.tree.map(jnp.shape, carry) == jaxrnn.LSTMState(h=(2, B, H), c=(2, B, H))
    variables = jax.jit(module.init)(jax.random.key(10), carry, x)  # the lazy init, really run
    params = variables["params"]["cell"]
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, jaxrnn_params(cell, 0))

    @jax.jit
    def both(variables, carry, x):
        params = variables["params"]["cell"]
        flat_carry = jax.tree.map(lambda a: a.reshape(2 * B, H), carry)
        flat = jaxrnn_step(cell, params, flat_carry, x.reshape(2 * B, D))
        return module.apply(variables, carry, x), jax.tree.map(
            lambda a: a.reshape(2, B, H), flat
        )

    close(*both(variables, carry, x))


def test_rnn_module_equals_scan_and_shares_layout_with_cell_module():
    cell = jaxrnn.GRU(H)
    xs, h0 = inputs(11)
    lengths = jnp.array([T, 3, 1], jnp.int32)
    module = jflax.RNNModule(cell, reverse=True)
    variables = random_like(jax.eval_shape(module.init, jax.random.key(0), xs), 12)
    carry = jaxrnn.GRUState(h=h0)

    @jax.jit
    def both(variables, xs, carry, lengths):
        params = variables["params"]["cell"]
        out = module.apply(variables, xs, carry, lengths=lengths)
        expected = jaxrnn.scan(cell, params, xs, carry, lengths=lengths, reverse=True)
        # the same params drive nn.RNN(CellModule(cell)), one level deeper (nn.RNN's "cell")
        via_linen = nn.RNN(jflax.CellModule(cell)).apply(
            {"params": {"cell": variables["params"]}}, xs
        )
        return (out, via_linen), (expected, jaxrnn.scan(cell, params, xs)[0])

    close(*both(variables, xs, carry, lengths))


def test_nnx_cell_step_scan_and_grad():
    cell = jaxrnn.LSTM(H)
    model = jflax.nnx_cell(cell, D, rngs=nnx.Rngs(13))
    params = model.params.get_value()
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, jaxrnn_params(cell, 0))
    xs, _ = inputs(13)
    lengths = jnp.array([T, 1, 0], jnp.int32)

    @nnx.jit
    def run(model, xs, lengths):
        step = model(model.initial_carry((B,)), xs[:, 0])
        grads = nnx.grad(lambda m: jnp.sum(m.scan(xs)[0] ** 2))(model)
        return step, model.scan(xs, lengths=lengths), grads["params"].get_value()

    @jax.jit
    def expected(params, xs, lengths):
        step = jaxrnn_step(cell, params, cell.initial_carry(params, (B,)), xs[:, 0])
        grads = jax.grad(lambda p: jnp.sum(jaxrnn.scan(cell, p, xs)[0] ** 2))(params)
        return step, jaxrnn.scan(cell, params, xs, lengths=lengths), grads

    close(run(model, xs, lengths), expected(params, xs, lengths))


def test_conversion_errors_name_the_problem():
    fp = flax_params(nn.GRUCell(H), 14)
    with pytest.raises(ValueError, match=r"from_flax_lstm: flax_params has no 'ii'/'kernel'"):
        jflax.from_flax_lstm(fp)
    bad = {**fp, "hz": {"kernel": jnp.zeros((H + 1, H))}}
    with pytest.raises(ValueError, match=r"from_flax_gru: flax_params\['hz'\]\['kernel'\] has "
                       r"shape \(5, 4\); expected \(4, 4\)"):
        jflax.from_flax_gru(bad)
    cell = jaxrnn.GRU(H, reset_after=False)
    with pytest.raises(ValueError, match="to_flax_gru: cell.reset_after=False"):
        jflax.to_flax_gru(jaxrnn_params(cell, 0), cell)
    cell = jaxrnn.LSTM(H, proj_size=2)
    with pytest.raises(ValueError, match="to_flax_lstm: cell.proj_size=2"):
        jflax.to_flax_lstm(jaxrnn_params(cell, 0), cell)
