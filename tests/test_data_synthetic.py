"""Tests for jaxrnn.data.synthetic: Markov corpora and their entropy rate."""

import numpy as np
import pytest

from jaxrnn.data import markov_corpus, stationary_distribution


def _empirical_conditional_entropy(tokens: np.ndarray, vocab_size: int, order: int) -> float:
    """Plug-in estimate of H(x_t | x_{t-order..t-1}) in nats."""
    context = np.zeros(len(tokens) - order, dtype=np.int64)
    for k in range(order):
        context = context * vocab_size + tokens[k : len(tokens) - order + k]
    counts = np.zeros((vocab_size**order, vocab_size))
    np.add.at(counts, (context, tokens[order:]), 1.0)
    conditional = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    logs = np.log(np.where(counts > 0, conditional, 1.0))
    return float(-(counts * logs).sum() / counts.sum())


@pytest.mark.parametrize(("vocab_size", "order", "concentration"), [(6, 1, 0.3), (4, 2, 0.5)])
def test_entropy_rate_matches_a_long_sample(vocab_size, order, concentration):
    corpus, entropy_rate = markov_corpus(
        vocab_size, 200_000, seed=3, concentration=concentration, order=order
    )
    assert 0.0 < entropy_rate < np.log(vocab_size)
    empirical = _empirical_conditional_entropy(corpus.train, vocab_size, order)
    assert empirical == pytest.approx(entropy_rate, abs=0.02)


def test_shapes_vocabulary_and_splits():
    corpus, _ = markov_corpus(5, (100, 20, 30), seed=0)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (100, 20, 30)
    for split in (corpus.train, corpus.valid, corpus.test):
        assert split.dtype == np.int32
        assert split.min() >= 0 and split.max() < 5
    assert corpus.vocab.words == ("w0", "w1", "w2", "w3", "w4")
    assert corpus.vocab.index("w3") == 3
    corpus, _ = markov_corpus(5, 100, seed=0)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (100, 10, 10)


def test_deterministic_for_a_seed():
    a, ha = markov_corpus(7, (500, 50, 50), seed=11)
    b, hb = markov_corpus(7, (500, 50, 50), seed=11)
    c, hc = markov_corpus(7, (500, 50, 50), seed=12)
    assert ha == hb and ha != hc
    for x, y in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.train, c.train)


def test_stationary_distribution_first_order():
    transitions = np.array([[0.9, 0.1], [0.5, 0.5]])
    pi = stationary_distribution(transitions)
    np.testing.assert_allclose(pi, [5 / 6, 1 / 6], atol=1e-10)
    np.testing.assert_allclose(pi @ transitions, pi, atol=1e-10)


def test_periodic_chain_still_converges():
    pi = stationary_distribution(np.array([[0.0, 1.0], [1.0, 0.0]]))
    np.testing.assert_allclose(pi, [0.5, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 1}, "vocab_size=1"),
        ({"order": 0}, "order=0"),
        ({"concentration": 0.0}, "concentration=0.0"),
        ({"num_tokens": (10, 10)}, "expected an int"),
        ({"num_tokens": (10, 0, 5)}, "every split"),
        ({"vocab_size": 5000}, "too many"),
    ],
)
def test_argument_errors(kwargs, match):
    arguments = {"vocab_size": 4, "num_tokens": 100, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        markov_corpus(**arguments)
