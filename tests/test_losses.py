"""jaxrnn.nn.losses: the fused output layer + cross entropy equals the plain formulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn.nn.losses import linear_cross_entropy, token_cross_entropy

B, T, H, V = 3, 4, 5, 7


def _inputs():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    h = jax.random.normal(k[0], (B, T, H))
    w = jax.random.normal(k[1], (V, H))
    b = jax.random.normal(k[2], (V,))
    targets = jax.random.randint(k[3], (B, T), 0, V)
    return h, w, b, targets


def test_token_cross_entropy_is_minus_log_softmax_at_the_target():
    h, w, b, targets = _inputs()
    logits = np.asarray(h, np.float64) @ np.asarray(w, np.float64).T + np.asarray(b, np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, np.asarray(targets)[..., None], -1)[..., 0]
    got = token_cross_entropy(h @ w.T + b[None, None], targets)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_cross_entropy_values_and_gradients_equal_autodiff(bias):
    h, w, b, targets = _inputs()
    b = b if bias else None
    weights = jnp.arange(B * T, dtype=jnp.float32).reshape(B, T)  # distinct cotangents per row

    def fused(h, w, b):
        return jnp.sum(weights * linear_cross_entropy(h, w, b, targets))

    def plain(h, w, b):
        logits = h @ w.T + (0.0 if b is None else b[None, None, :])
        return jnp.sum(weights * token_cross_entropy(logits, targets))

    argnums = (0, 1, 2) if bias else (0, 1)
    got_v, got_g = jax.jit(jax.value_and_grad(fused, argnums))(h, w, b)
    want_v, want_g = jax.value_and_grad(plain, argnums)(h, w, b)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5)
    for got, want in zip(got_g, want_g, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert linear_cross_entropy(h, w, b, targets).shape == (B, T)


def test_linear_cross_entropy_rejects_bad_inputs_by_name():
    h, w, b, targets = _inputs()
    with pytest.raises(ValueError, match=r"w has shape \(7, 4\); expected \(\?, 5\)"):
        linear_cross_entropy(h, w[:, :4], b, targets)
    with pytest.raises(ValueError, match=r"b has shape \(6,\); expected \(7,\)"):
        linear_cross_entropy(h, w, b[:6], targets)
    with pytest.raises(TypeError, match="b has dtype bfloat16"):
        linear_cross_entropy(h, w, b.astype(jnp.bfloat16), targets)
    with pytest.raises(ValueError, match=r"targets has shape \(3, 3\); expected \(3, 4\)"):
        linear_cross_entropy(h, w, b, targets[:, :3])
    with pytest.raises(TypeError, match="targets has dtype float32"):
        linear_cross_entropy(h, w, b, targets.astype(jnp.float32))
    with pytest.raises(TypeError, match="h has dtype int32"):
        linear_cross_entropy(targets, w, b, targets)


def test_linear_cross_entropy_bfloat16_compute_equals_autodiff_on_rounded_operands():
    """compute_dtype=bfloat16: each matmul sees bf16-rounded operands and accumulates in f32."""
    h, w, b, targets = _inputs()
    bf = jnp.bfloat16
    r = lambda x: x.astype(bf).astype(jnp.float32)  # noqa: E731

    def low(h, w, b):
        return jnp.sum(linear_cross_entropy(h, w, b, targets, compute_dtype=bf))

    got_v, (gh, gw, gb) = jax.value_and_grad(low, (0, 1, 2))(h, w, b)
    logits = r(h) @ r(w).T + b[None, None]
    want_v = jnp.sum(token_cross_entropy(logits, targets))
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5)
    d = jax.nn.softmax(logits) - jax.nn.one_hot(targets, V)  # d(sum nll) / d logits
    np.testing.assert_allclose(gb, d.sum((0, 1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gh, r(d) @ r(w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, jnp.einsum("btv,bth->vh", r(d), r(h)), rtol=1e-5, atol=1e-5)
    assert got_v.dtype == gh.dtype == gw.dtype == jnp.float32
    full = jnp.sum(linear_cross_entropy(h, w, b, targets))
    assert abs(float(full - got_v)) > 1e-6  # the rounding is real
