"""jaxrnn.decoding: logit filters, sampling, generate over LanguageModel.step, beam search."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import decoding as sampling
from jaxrnn.nn.language_model import LanguageModel

LOGITS = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]], jnp.float32))


def kept(logits):
    return np.isfinite(np.asarray(logits))


def test_filters():
    assert kept(sampling.filter_logits(LOGITS, top_k=2)).tolist() == [
        [True, True, False, False], [False, False, True, True]]
    # nucleus: the smallest prefix (by probability) whose mass reaches p
    assert kept(sampling.filter_logits(LOGITS, top_p=0.8)).tolist() == [
        [True, True, False, False], [False, True, True, True]]
    assert kept(sampling.filter_logits(LOGITS, top_p=0.05)).sum(axis=1).tolist() == [1, 1]
    np.testing.assert_allclose(sampling.filter_logits(LOGITS, temperature=0.5), 2 * LOGITS,
                               rtol=1e-6)
    both = sampling.filter_logits(LOGITS, top_k=3, top_p=0.5)
    assert kept(both).tolist() == [[True, False, False, False], [False, False, True, True]]


def test_sample_frequencies_match_the_filtered_softmax():
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draw = jax.vmap(lambda k: sampling.sample_logits(k, LOGITS[:1], top_k=3)[0])
    counts = np.bincount(np.asarray(draw(keys)), minlength=4) / 4000
    np.testing.assert_allclose(counts, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0], atol=0.03)
    greedy = sampling.sample_logits(jax.random.PRNGKey(1), LOGITS, temperature=0)
    assert greedy.dtype == jnp.int32 and greedy.tolist() == [0, 3]


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature must be a number >= 0; got -1.0"),
    (dict(top_k=0), "top_k must be a positive int or None; got 0"),
    (dict(top_p=1.5), "top_p must lie in (0, 1] or be None; got 1.5"),
])
def test_filter_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        sampling.filter_logits(LOGITS, **kwargs)


def test_logits_must_be_2d():
    with pytest.raises(ValueError, match=r"logits has shape \(4,\); expected \[batch, vocab"):
        sampling.sample_logits(jax.random.PRNGKey(0), LOGITS[0])


@pytest.fixture(scope="module")
def lm():
    rnn = jaxrnn.StackedRNN(jaxrnn.LSTM(8), num_layers=2, recurrent_dropout=0.2)
    model = LanguageModel(7, rnn, embed_size=5)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0))


def test_generate_greedy_equals_a_python_loop_and_the_prompt_equals_apply(lm):
    model, params = lm
    prompt = jnp.asarray([[1, 2, 3], [4, 5, 6]], jnp.int32)
    state0 = model.initial_state(params, 2)
    tokens, _ = jax.jit(lambda p, s, x: sampling.generate(
        functools.partial(model.step, p), s, x, 5, jax.random.PRNGKey(0), temperature=0))(
        params, state0, prompt)
    logits, state = jax.jit(model.apply)(params, prompt)  # the prompt as a whole sequence
    token, expected = np.argmax(logits[:, -1], axis=-1).astype(np.int32), []
    step = jax.jit(model.step)
    for _ in range(5):
        expected.append(token)
        state, step_logits = step(params, state, jnp.asarray(token))
        token = np.argmax(step_logits, axis=-1).astype(np.int32)
    np.testing.assert_array_equal(tokens, np.stack(expected, axis=1))


def test_generate_errors(lm):
    model, params = lm
    state = model.initial_state(params, 2)
    step = functools.partial(model.step, params)
    with pytest.raises(ValueError, match=r"prompt has shape \(2, 0\); expected \[B, P >= 1\]"):
        sampling.generate(step, state, jnp.zeros((2, 0), jnp.int32), 3, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"expected a leading batch axis of size 3"):
        sampling.generate(step, state, jnp.zeros((3, 1), jnp.int32), 3, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="num_tokens must be a positive integer; got 0"):
        sampling.generate(step, state, jnp.zeros((2, 1), jnp.int32), 0, jax.random.PRNGKey(0))


def markov_step(table):
    """A toy model whose state is the previous token: logits = table[token]."""
    def step(state, tokens):
        return tokens, table[tokens]
    return step


def test_beam_search_finds_the_exhaustive_best():
    vocab, length, end = 4, 3, 3
    table_np = np.random.default_rng(3).standard_normal((vocab, vocab)) * 2.0
    logp = table_np - np.log(np.exp(table_np).sum(axis=-1, keepdims=True))
    table = jnp.asarray(table_np, jnp.float32)
    best, best_score = None, -np.inf
    for seq in itertools.product(range(vocab), repeat=length):
        score, prev = 0.0, 0
        for t in seq:
            score += logp[prev, t]
            prev = t
            if t == end:
                break
        if score > best_score:
            stop = seq.index(end) + 1 if end in seq else length
            best, best_score = list(seq[:stop]) + [end] * (length - stop), score
    result = jax.jit(lambda s: sampling.beam_search(
        markov_step(table), s, s, beam_size=vocab ** (length - 1), max_len=length,
        end_token=end))(jnp.zeros((1,), jnp.int32))
    assert result.best[0].tolist() == best
    np.testing.assert_allclose(result.log_probs[0, 0], best_score, rtol=1e-5)
    assert np.all(np.diff(np.asarray(result.scores[0])) <= 1e-6)  # sorted best first


def test_beam_of_one_is_greedy(lm):
    model, params = lm
    step = functools.partial(model.step, params)
    state = model.initial_state(params, 2)
    start = jnp.asarray([1, 4], jnp.int32)
    greedy, beam = jax.jit(lambda state, start: (
        sampling.generate(step, state, start[:, None], 6, jax.random.PRNGKey(0),
                          temperature=0)[0],
        sampling.beam_search(step, state, start, beam_size=1, max_len=6, end_token=99)))(
        state, start)
    np.testing.assert_array_equal(beam.best, greedy)


def test_beam_search_freezes_finished_hypotheses():
    # token 1 ends; from the start token 0 it is by far the likeliest continuation
    table = jnp.asarray([[0.0, 5.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], jnp.float32)
    result = jax.jit(lambda s: sampling.beam_search(
        markov_step(table), s, s, beam_size=2, max_len=4, end_token=1, length_penalty=0.6))(
        jnp.zeros((2,), jnp.int32))
    assert result.best[0].tolist() == [1, 1, 1, 1]
    assert result.lengths[0, 0] == 1
    logp = 5.0 - float(np.log(np.exp(5.0) + 2.0))
    np.testing.assert_allclose(result.log_probs[0, 0], logp, rtol=1e-6)
    np.testing.assert_allclose(result.scores[0, 0], logp / 1.0 ** 0.6, rtol=1e-6)


def test_beam_search_errors():
    step = markov_step(jnp.zeros((3, 3), jnp.float32))
    state = jnp.zeros((2,), jnp.int32)
    with pytest.raises(ValueError, match="beam_size must be a positive integer; got 0"):
        sampling.beam_search(step, state, state, beam_size=0, max_len=3, end_token=1)
    with pytest.raises(ValueError, match="end_token must be an int >= 0; got -1"):
        sampling.beam_search(step, state, state, beam_size=2, max_len=3, end_token=-1)
    with pytest.raises(TypeError, match="start_tokens has dtype float32"):
        sampling.beam_search(step, state, jnp.zeros((2,)), beam_size=2, max_len=3, end_token=1)
