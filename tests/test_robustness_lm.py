"""LanguageModel and the losses with token ids outside [0, V) and params of another size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxrnn
from jaxrnn.nn.language_model import LanguageModel
from jaxrnn.nn.losses import linear_cross_entropy, token_cross_entropy

V = 10
MODEL = LanguageModel(V, jaxrnn.StackedRNN(jaxrnn.LSTM(4)), embed_size=4)
PARAMS = MODEL.init(jax.random.PRNGKey(0))
TOKENS = jnp.array([[1, 2, 3], [4, 5, 6]], jnp.int32)


@pytest.mark.parametrize("bad", [V, -1, 1000])
def test_concrete_token_ids_outside_the_vocabulary_raise(bad):
    tokens = TOKENS.at[1, 2].set(bad)
    message = rf"LanguageModel: tokens holds 1 id\(s\) outside \[0, {V}\), e.g. {bad}"
    with pytest.raises(IndexError, match=message):
        MODEL.apply(PARAMS, tokens)
    with pytest.raises(IndexError, match=message):
        MODEL.loss(PARAMS, tokens, TOKENS)
    with pytest.raises(IndexError, match=rf"LanguageModel.loss: targets holds 1 id\(s\) outside "
                                         rf"\[0, {V}\), e.g. {bad}"):
        MODEL.loss(PARAMS, TOKENS, tokens)
    with pytest.raises(IndexError, match=r"LanguageModel.step: token holds 1 id"):
        MODEL.step(PARAMS, MODEL.initial_state(PARAMS, 2), jnp.array([0, bad]))


def test_traced_out_of_range_ids_give_nan_not_another_tokens_row():
    apply = jax.jit(MODEL.apply)
    good_logits, _ = apply(PARAMS, TOKENS)
    for bad in (V, -1):
        logits, _ = apply(PARAMS, TOKENS.at[1, 1].set(bad))
        assert np.all(np.isnan(np.asarray(logits[1, 1:])))  # from the bad id on, NaN
        np.testing.assert_array_equal(np.asarray(logits[0]), np.asarray(good_logits[0]))
        loss, (_, nll_sum) = jax.jit(MODEL.loss)(PARAMS, TOKENS, TOKENS.at[0, 2].set(bad))
        assert np.isnan(float(loss)) and np.isnan(float(nll_sum))


def test_losses_give_nan_for_traced_out_of_range_targets_and_raise_for_concrete():
    h = jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    w = jax.random.normal(jax.random.PRNGKey(2), (V, 4))
    b = jnp.zeros((V,))
    targets = jnp.array([0, -1, V], jnp.int32)
    nll = jax.jit(linear_cross_entropy)(h, w, b, targets)
    assert np.isfinite(float(nll[0])) and np.all(np.isnan(np.asarray(nll[1:])))
    logits = h @ w.T
    nll = jax.jit(token_cross_entropy)(logits, targets)
    assert np.isfinite(float(nll[0])) and np.all(np.isnan(np.asarray(nll[1:])))
    with pytest.raises(IndexError, match=r"linear_cross_entropy: targets holds 2 id\(s\) "
                                         r"outside \[0, 10\), e.g. -1"):
        linear_cross_entropy(h, w, b, targets)
    with pytest.raises(IndexError, match=r"token_cross_entropy: targets holds 2 id"):
        token_cross_entropy(logits, targets)


def test_checkify_catches_bad_ids_under_grad_and_jit():
    """The check sits at the embedding, before the scan, so jax.grad keeps it."""
    model = LanguageModel(V, jaxrnn.StackedRNN(jaxrnn.LSTM(4)), embed_size=4,
                          id_checks="checkify")

    def loss(params, tokens, targets):
        return model.loss(params, tokens, targets)[0]

    checked = jax.jit(checkify.checkify(jax.grad(loss)))
    err, grads = checked(PARAMS, TOKENS, TOKENS)
    assert err.get() is None
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
    err, _ = checked(PARAMS, TOKENS.at[0, 1].set(V + 3), TOKENS)
    assert "LanguageModel: tokens holds an id outside [0, 10): 13" in err.get()
    err, _ = checked(PARAMS, TOKENS, TOKENS.at[1, 0].set(-2))
    assert "LanguageModel.loss: targets holds an id outside [0, 10): -2" in err.get()


def test_params_of_another_vocabulary_size_are_rejected():
    small = LanguageModel(5, MODEL.rnn, embed_size=4).init(jax.random.PRNGKey(0))
    message = (r"LanguageModel: params\['embedding'\] has shape \(5, 4\); expected \(10, 4\) = "
               r"\(vocab_size, embed_size\) for vocab_size=10")
    with pytest.raises(ValueError, match=message):
        MODEL.loss(small, TOKENS % 5, TOKENS % 5)
    with pytest.raises(ValueError, match=message):
        jax.jit(MODEL.apply)(small, TOKENS % 5)
    wrong_b = {**PARAMS, "softmax_b": jnp.zeros((7,))}
    with pytest.raises(ValueError, match=r"params\['softmax_b'\] has shape \(7,\); expected"):
        MODEL.apply(wrong_b, TOKENS)
    tied = LanguageModel(V, MODEL.rnn, embed_size=4, tie_weights=True)
    with pytest.raises(ValueError, match=r"params has keys \['embedding', 'rnn', 'softmax_b', "
                                         r"'softmax_w'\]; expected \['embedding', 'rnn', "
                                         r"'softmax_b'\]"):
        tied.apply(PARAMS, TOKENS)
