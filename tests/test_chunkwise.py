"""jaxrnn.chunkwise_scan against its slow twin jaxrnn.scan on the same weights: outputs, final
carries and gradients, with lengths, resets (inside and across chunks), reverse, a non-zero
initial carry and T not a multiple of the chunk size; float32 and float64."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

D, T, BATCH, CHUNK = 2, 11, 3, 4
CELLS = {
    "mlstm": jaxrnn.MLSTM(4, num_heads=2, key_size=3),
    "deltanet": jaxrnn.DeltaNet(3),
    "gated_deltanet": jaxrnn.GatedDeltaNet(4, num_heads=2),
    "gated_deltanet_neg": jaxrnn.GatedDeltaNet(3, negative_eigenvalues=True),
}
TOLERANCE = {"float32": (1e-4, 1e-6), "float64": (1e-10, 1e-13)}


def perturbed(tree, key, scale=0.3):
    leaves, structure = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(structure, [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        for k, leaf in zip(keys, leaves, strict=True)
    ])


def inputs(cell, dtype):
    params = perturbed(cell.init(jax.random.PRNGKey(0), D), jax.random.PRNGKey(1))
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    xs = jax.random.normal(jax.random.PRNGKey(2), (BATCH, T, D), dtype)
    carry = perturbed(cell.initial_carry(params, (BATCH,)), jax.random.PRNGKey(3), 0.1)
    lengths = jnp.array([T, 6, 0])
    resets = jax.random.bernoulli(jax.random.PRNGKey(4), 0.25, (BATCH, T))
    resets = resets.at[0, CHUNK].set(True)  # a reset on a chunk boundary too
    return params, xs, carry, lengths, resets


def run_directions(run, params, xs, carry, lengths, resets, directions):
    """Runs in the given directions; a loss touching every output and every final-carry leaf."""
    outs = [run(params, xs, carry, lengths=lengths, resets=resets, reverse=reverse)
            for reverse in directions]
    weights = jnp.linspace(0.5, 1.5, T, dtype=xs.dtype)[None, :, None]
    loss = sum(jnp.sum(jnp.sin(ys) * weights) + sum(jnp.sum(jnp.square(leaf))
                                                    for leaf in jax.tree.leaves(final))
               for ys, final in outs)
    return loss, outs


@pytest.mark.parametrize("name, dtype", [
    *[(name, "float32") for name in CELLS],
    *[(name, "float64") for name in ("mlstm", "deltanet", "gated_deltanet")],
])
def test_chunkwise_equals_scan_values_carries_and_grads(name, dtype):
    directions = (False, True)  # both in one compiled program
    cell = CELLS[name]
    rtol, atol = TOLERANCE[dtype]
    with jax.enable_x64(dtype == "float64"):
        params, xs, carry, lengths, resets = inputs(cell, jnp.dtype(dtype))
        # jaxrnn.scan gets the resets on valid steps only: on padding steps they have no effect
        # in chunkwise_scan (asserted below).
        valid_resets = resets & (jnp.arange(T)[None, :] < lengths[:, None])

        def chunkwise(p, x, c, **kw):
            return jaxrnn.chunkwise_scan(cell, p, x, c, chunk_size=CHUNK, **kw)

        def fast(p):
            return run_directions(chunkwise, p, xs, carry, lengths, resets, directions)

        def slow(p):
            return run_directions(
                lambda p, x, c, **kw: jaxrnn.scan(cell, p, x, c, **kw),
                p, xs, carry, lengths, valid_resets, directions)

        (loss_f, outs_f), grads_f = jax.jit(jax.value_and_grad(fast, has_aux=True))(params)
        (loss_s, outs_s), grads_s = jax.jit(jax.value_and_grad(slow, has_aux=True))(params)
        outs_f, outs_s, grads_f, grads_s = jax.tree.map(np.asarray,
                                                        (outs_f, outs_s, grads_f, grads_s))
    for got, want in zip(jax.tree.leaves(outs_f), jax.tree.leaves(outs_s), strict=True):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    for ys, _ in outs_f:
        np.testing.assert_array_equal(ys[1, 6:], 0.0)
        np.testing.assert_array_equal(ys[2], 0.0)
    for key in grads_s:
        scale = float(np.abs(grads_s[key]).max())
        assert scale > 0, key
        np.testing.assert_allclose(grads_f[key], grads_s[key], rtol=rtol, atol=atol * scale,
                                   err_msg=key)


def test_chunk_sizes_time_major_and_padding_resets():
    cell = CELLS["gated_deltanet"]
    params, xs, carry, lengths, resets = inputs(cell, jnp.float32)
    valid = jnp.arange(T)[None, :] < lengths[:, None]
    want_ys, want_final = jaxrnn.scan(cell, params, xs, carry, lengths=lengths,
                                      resets=resets & valid)
    for chunk in (1, 5, T, 64):
        ys, final = jaxrnn.chunkwise_scan(cell, params, xs, carry, chunk_size=chunk,
                                          lengths=lengths, resets=resets)
        np.testing.assert_allclose(ys, want_ys, rtol=1e-4, atol=1e-6, err_msg=str(chunk))
        chex.assert_trees_all_close(final, want_final, rtol=1e-4, atol=1e-6,
                                    custom_message=f"chunk_size={chunk}")
    ys_tm, _ = jaxrnn.chunkwise_scan(cell, params, jnp.swapaxes(xs, 0, 1), carry,
                                     chunk_size=CHUNK, lengths=lengths, resets=resets.T,
                                     time_major=True)
    np.testing.assert_allclose(jnp.swapaxes(ys_tm, 0, 1), want_ys, rtol=1e-4, atol=1e-6)
    empty, final = jaxrnn.chunkwise_scan(cell, params, xs[:, :0], carry)
    assert empty.shape == (BATCH, 0, cell.output_size)
    np.testing.assert_array_equal(final.s, carry.s)


def test_cell_without_chunkwise_form_and_bad_chunk_size():
    gru = jaxrnn.GRU(3)
    params = gru.init(jax.random.PRNGKey(0), D)
    xs = jnp.zeros((1, 4, D))
    with pytest.raises(ValueError, match="chunkwise_scan: cell GRU has no chunkwise form"):
        jaxrnn.chunkwise_scan(gru, params, xs)
    cell = CELLS["deltanet"]
    params = cell.init(jax.random.PRNGKey(0), D)
    for bad in (0, -2, 2.5, True, None):
        with pytest.raises(ValueError, match=f"chunk_size={bad!r}; expected a positive integer"):
            jaxrnn.chunkwise_scan(cell, params, xs, chunk_size=bad)
    with pytest.raises(ValueError, match=r"xs has shape \(1, 4, 3\); expected \(\?, \?, 2\)"):
        jaxrnn.chunkwise_scan(cell, params, jnp.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match=r"chunk_step: xs has shape \(4, 3\)"):
        cell.chunk_step(params, cell.initial_carry(params), jnp.zeros((4, 3)),
                        starts=jnp.zeros(4, bool), valid=jnp.ones(4, bool),
                        initial_carry=cell.initial_carry(params))
