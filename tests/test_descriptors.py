"""One descriptor list, every cell through the same checks: each registered variant and cells
written in user_cells.py exactly as jaxrnn.Cell's docstring tells a user to.

Checks: jaxrnn.scan equals a Python loop over ``step`` under every strategy the cell supports
(lengths, reverse, resets; values, final carries and gradients); ``step`` with and without jit
and under vmap; StackedRNN (2 layers, bidirectional, residual, dropout, recurrent dropout where
declared) against the same stack composed from jaxrnn.scan, its one-step API, and a
checkpoint round trip of its params and named state; associative_scan where the cell is linear.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import user_cells

import jaxrnn
from jaxrnn import variants
from jaxrnn.cells import base
from jaxrnn.drivers.parallel import is_linear
from jaxrnn.drivers.strategy import resolve_strategy
from jaxrnn.train import Checkpointer

H, D, B, T = 3, 2, 2, 5
LENGTHS = (5, 3)
RESETS = np.zeros((B, T), bool)
RESETS[0, 2] = RESETS[1, 1] = True

USER_CELLS = {
    "user:TanhRNN": lambda: user_cells.TanhRNN(H),
    "user:TwoTimescale": lambda: user_cells.TwoTimescale(H),
    "user:Functional": lambda: user_cells.FUNCTIONAL,
}
DESCRIPTORS = {**{name: (lambda n=name: variants.make(n, H)) for name in variants.names()},
               **USER_CELLS}


def tree_close(a, b, rtol=2e-5, atol=2e-6):
    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


@pytest.fixture(params=list(DESCRIPTORS), scope="module")
def built(request):
    cell = DESCRIPTORS[request.param]()
    params = cell.init(jax.random.PRNGKey(0), D)
    xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, D))
    return request.param, cell, params, xs


def python_loop(cell, params, xs, lengths, resets, reverse):
    """The obviously correct formulation: one example and one (jitted) step at a time."""
    step = jax.jit(cell.step)
    ys, finals = [], []
    for b in range(xs.shape[0]):
        carry0 = cell.initial_carry(params)
        carry, length = carry0, lengths[b]
        order = range(length - 1, -1, -1) if reverse else range(length)
        out = [None] * xs.shape[1]
        for t in order:
            # a segment starts at x_t: forwards the carry resets before x_t, backwards before
            # x_{t-1}
            if (resets[b, t + 1] if t + 1 < length else False) if reverse else resets[b, t]:
                carry = carry0
            carry, out[t] = step(params, carry, xs[b, t])
        zero = jnp.zeros_like(next(y for y in out if y is not None))
        ys.append(jnp.stack([zero if y is None else y for y in out]))
        finals.append(carry)
    return jnp.stack(ys), jax.tree.map(lambda *c: jnp.stack(c), *finals)


def strategies(cell):
    """The distinct strategies that run for ``cell`` (in_loop first: the slow twin)."""
    chosen = [resolve_strategy(s, cell) for s in ("in_loop", "hoisted", "fused")
              if base.has_split(cell) or s == "in_loop"]
    return tuple(dict.fromkeys(chosen))


def loss_of(ys, final):
    weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    return jnp.sum(ys * weights) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(final))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_scan_equals_python_loop_under_every_strategy(built, reverse):
    """Values and final carries against the Python loop; gradients of every fast path against
    those of in_loop (plain autodiff through the same step)."""
    name, cell, params, xs = built
    lengths = jnp.array(LENGTHS)
    resets = jnp.asarray(RESETS)

    @jax.jit
    def run_all(p):
        out = {}
        for strategy in strategies(cell):
            def loss(p, strategy=strategy):
                ys, final = jaxrnn.scan(cell, p, xs, lengths=lengths, resets=resets,
                                        reverse=reverse, strategy=strategy)
                return loss_of(ys, final), (ys, final)
            out[strategy] = jax.value_and_grad(loss, has_aux=True)(p)
        return out

    want_ys, want_final = python_loop(cell, params, xs, LENGTHS, RESETS, reverse)
    results = run_all(params)
    (_, _), slow_grad = results["in_loop"]
    for strategy, ((_, (ys, final)), grad) in results.items():
        assert ys.shape == want_ys.shape, (name, strategy)
        tree_close((ys, final), (want_ys, want_final))
        tree_close(grad, slow_grad, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(want_ys[1, LENGTHS[1]:], 0.0)


@pytest.mark.parametrize("transform", [jax.jit, lambda f: f], ids=["jit", "eager"])
def test_step_one_example_jit_and_vmap(built, transform):
    name, cell, params, xs = built
    carry = cell.initial_carry(params)
    new, y = transform(cell.step)(params, carry, xs[0, 0])
    chex.assert_trees_all_equal_shapes_and_dtypes(new, carry)
    assert y.ndim == 1 and y.shape[0] == base.output_size(cell, D)
    carries = cell.initial_carry(params, (B,))
    _, yb = jax.vmap(cell.step, in_axes=(None, 0, 0))(params, carries, xs[:, 0])
    tree_close(yb[0], y)


def compose_stack(cell, params, xs, lengths):
    """StackedRNN(2 layers, bidirectional, residual) in eval mode, from jaxrnn.scan calls."""
    h = xs
    for layer, lp in enumerate(params["layers"]):
        fwd, _ = jaxrnn.scan(cell, lp["fwd"], h, lengths=lengths, strategy="in_loop")
        bwd, _ = jaxrnn.scan(cell, lp["bwd"], h, lengths=lengths, reverse=True,
                             strategy="in_loop")
        out = jnp.concatenate([fwd, bwd], axis=-1)
        h = out + h if layer > 0 else out
    return h


def test_stacked_rnn_and_checkpoint(built, tmp_path):
    name, cell, params, xs = built
    declared = getattr(cell, "recurrent_mask_field", None) is not None
    model = jaxrnn.StackedRNN(cell, num_layers=2, bidirectional=True, residual=True,
                              dropout=0.25, recurrent_dropout=0.2 if declared else 0.0)
    stack_params = model.init(jax.random.PRNGKey(2), D)
    lengths = jnp.array(LENGTHS)

    run = jax.jit(lambda p, key: model.apply(p, xs, lengths=lengths, key=key, train=True))
    ys_train, state = run(stack_params, jax.random.PRNGKey(3))
    assert ys_train.shape == (B, T, model.output_size_for(D))
    assert bool(jnp.all(jnp.isfinite(ys_train)))
    np.testing.assert_array_equal(ys_train[1, LENGTHS[1]:], 0.0)
    if name in USER_CELLS:  # the wiring (directions, concatenation, residual) once per user cell
        ys, _ = jax.jit(lambda p: model.apply(p, xs, lengths=lengths))(stack_params)
        tree_close(ys, jax.jit(compose_stack, static_argnums=0)(cell, stack_params, xs, lengths))
        assert not np.allclose(ys_train, ys)
    fwd, bwd = state[1]
    chex.assert_trees_all_equal_shapes(state.layers[1].fwd, fwd, bwd,
                                       cell.initial_carry(params, (B,)))

    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(1, {"params": stack_params, "state": state}, {"cell": name})
        restored, meta = ckpt.restore(like={"params": stack_params, "state": state})
    assert meta == {"cell": name} and type(restored["state"]) is jaxrnn.StackState
    chex.assert_trees_all_equal(restored, {"params": stack_params, "state": state})


def test_stacked_rnn_one_step_api_equals_apply(built):
    name, cell, params, xs = built
    model = jaxrnn.StackedRNN(cell, num_layers=2)
    stack_params = model.init(jax.random.PRNGKey(4), D)

    @jax.jit
    def both(p):
        ys, final = model.apply(p, xs)
        state, outs = model.initial_state(p, B), []
        for t in range(T):
            state, y = model.step(p, state, xs[:, t])
            outs.append(y)
        return ys, final, jnp.stack(outs, axis=1), state

    ys, final, stepped, state = both(stack_params)
    tree_close((stepped, state), (ys, final))
    assert type(state) is jaxrnn.StackState and type(state[0]) is jaxrnn.LayerState


def test_associative_scan_where_linear(built):
    name, cell, params, xs = built
    if not is_linear(cell):
        with pytest.raises(TypeError, match="has no linear recurrence"):
            jaxrnn.associative_scan(cell, params, xs)
        return
    kwargs = dict(lengths=jnp.array(LENGTHS), resets=jnp.asarray(RESETS), reverse=True)
    got = jax.jit(lambda p: jaxrnn.associative_scan(cell, p, xs, **kwargs))(params)
    want = jax.jit(lambda p: jaxrnn.scan(cell, p, xs, strategy="in_loop", **kwargs))(params)
    tree_close(got, want, rtol=1e-4, atol=1e-5)
