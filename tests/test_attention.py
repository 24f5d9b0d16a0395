"""jaxrnn.nn.attention: the equations against numpy, masking, batching with vmap, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn.nn import attention


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


RNG = np.random.default_rng(0)


def normal(*shape):
    return jnp.asarray(RNG.standard_normal(shape), jnp.float32)


@pytest.fixture(scope="module")
def setup():
    params = {"w_query": normal(5, 4), "w_key": normal(5, 6), "bias": normal(5), "v": normal(5)}
    return params, normal(7, 6), normal(4)


def test_init_additive_layout():
    params = jax.jit(attention.init_additive, static_argnums=(1, 2, 3))(
        jax.random.PRNGKey(0), 4, 6, 5)
    assert {k: v.shape for k, v in params.items()} == {
        "w_query": (5, 4), "w_key": (5, 6), "bias": (5,), "v": (5,)}
    assert float(jnp.max(jnp.abs(params["w_key"]))) <= 1 / np.sqrt(6)


def test_additive_matches_bahdanau_equation(setup):
    params, keys, query = setup
    mask = jnp.arange(7) < 5
    context, weights = attention.additive_attention(params, query, keys, mask)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    k, q = np.asarray(keys, np.float64), np.asarray(query, np.float64)
    scores = np.tanh(k @ p["w_key"].T + p["w_query"] @ q + p["bias"]) @ p["v"]
    expected = np.zeros(7)
    expected[:5] = softmax(scores[:5])
    np.testing.assert_allclose(weights, expected, atol=1e-6)
    np.testing.assert_allclose(context, expected @ k, atol=1e-5)
    projected = attention.project_keys(params, keys)
    again, _ = attention.additive_attention(params, query, keys, mask, projected_keys=projected)
    np.testing.assert_allclose(again, context, atol=1e-6)


@pytest.mark.parametrize("scaled", [False, True])
def test_dot_matches_luong_equation(setup, scaled):
    _, keys, _ = setup
    query = normal(6)
    context, weights = attention.dot_attention(query, keys, scaled=scaled)
    scores = np.asarray(keys) @ np.asarray(query) / (np.sqrt(6) if scaled else 1.0)
    np.testing.assert_allclose(weights, softmax(scores), atol=1e-6)
    np.testing.assert_allclose(context, softmax(scores) @ np.asarray(keys), atol=1e-5)


def test_masked_softmax_edges():
    w = attention.masked_softmax(jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([True, False, True]))
    np.testing.assert_allclose(w, [softmax(np.array([1.0, 3.0]))[0], 0.0,
                                   softmax(np.array([1.0, 3.0]))[1]], atol=1e-6)
    none = attention.masked_softmax(jnp.ones(3), jnp.zeros(3, bool))
    assert none.tolist() == [0.0, 0.0, 0.0]
    grads = jax.grad(lambda s: attention.masked_softmax(s, jnp.zeros(3, bool)).sum())(jnp.ones(3))
    assert np.all(np.isfinite(grads))


def test_vmap_batches_and_gradients_are_finite(setup):
    params, _, _ = setup
    keys, queries = normal(3, 7, 6), normal(3, 4)
    mask = jnp.asarray(np.arange(7)[None, :] < np.array([7, 3, 1])[:, None])
    batched = jax.vmap(attention.additive_attention, in_axes=(None, 0, 0, 0))

    contexts, weights = jax.jit(batched)(params, queries, keys, mask)
    assert contexts.shape == (3, 6) and weights.shape == (3, 7)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    assert float(weights[2, 1:].sum()) == 0.0
    grads = jax.jit(jax.grad(lambda p: jnp.sum(batched(p, queries, keys, mask)[0] ** 2)))(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_errors_name_the_argument(setup):
    params, keys, query = setup
    with pytest.raises(ValueError, match=r"additive_scores: query has shape \(3,\); expected "
                                         r"\(4,\) = \(query_size,\) for one example"):
        attention.additive_attention(params, query[:3], keys)
    with pytest.raises(ValueError, match=r"dot_attention: keys has shape \(2, 7, 6\); expected "
                                         r"\[S, key_size\]"):
        attention.dot_attention(jnp.ones(6), jnp.stack([keys, keys]))
    with pytest.raises(TypeError, match="dot_attention: mask has dtype int32; expected a bool"):
        attention.dot_attention(jnp.ones(6), keys, jnp.ones(7, jnp.int32))
    with pytest.raises(ValueError, match="init_additive: attention_size must be a positive "
                                         "integer; got 0"):
        attention.init_additive(None, 4, 6, 0)
