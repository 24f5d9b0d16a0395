"""Synthetic corpora with a known perplexity floor: samples of a random Markov chain.

A model trained on :func:`markov_corpus` can be judged against the chain's exact entropy rate

    H = -sum_c pi(c) sum_w P(w | c) log P(w | c)

(nats per token; ``c`` ranges over contexts of the last ``order`` tokens, ``pi`` is the stationary
distribution over contexts), which is the lowest per-token cross entropy any model can reach on
a long sample; ``exp(H)`` is the perplexity floor.
"""

from __future__ import annotations

import numpy as np

from jaxrnn.data.text import Corpus, Vocabulary

__all__ = ["markov_corpus", "stationary_distribution"]

_MAX_TRANSITIONS = 1 << 24  # 128 MiB of float64 probabilities


def _successor_mass(pi: np.ndarray, transitions: np.ndarray) -> np.ndarray:
    """One step of the context chain: the distribution of the next context given ``pi``.

    Contexts are base-V integers whose last digit is the most recent token, so after emitting
    ``w`` the context ``c`` becomes ``(c * V + w) mod V**order``.
    """
    num_contexts, vocab_size = transitions.shape
    joint = pi[:, None] * transitions  # [context, next token]
    # The oldest token (leading digit) drops out of the context.
    return joint.reshape(vocab_size, num_contexts // vocab_size * vocab_size).sum(axis=0)


def stationary_distribution(
    transitions: np.ndarray, *, tol: float = 1e-13, max_iterations: int = 100_000
) -> np.ndarray:
    """Stationary distribution over contexts of an order-k Markov chain, by power iteration.

    Args:
        transitions: ``[V**order, V]`` row-stochastic matrix; row ``c`` is the next-token
            distribution after context ``c`` (a base-V number, most recent token last).
        tol: stop when the L1 change of one step is below this.
        max_iterations: give up after this many steps.

    Returns:
        float64 array ``[V**order]`` summing to 1.

    Raises:
        RuntimeError: if power iteration does not converge.
    """
    num_contexts = transitions.shape[0]
    pi = np.full(num_contexts, 1.0 / num_contexts)
    for _ in range(max_iterations):
        # Averaging with the previous iterate (a lazy chain) has the same fixed point and
        # cannot oscillate on nearly periodic chains.
        updated = 0.5 * (pi + _successor_mass(pi, transitions))
        updated /= updated.sum()
        if np.abs(updated - pi).sum() < tol:
            return updated
        pi = updated
    raise RuntimeError(
        f"stationary_distribution: power iteration did not converge in {max_iterations} steps "
        f"(last L1 change {np.abs(updated - pi).sum():.3g}); the chain mixes too slowly — "
        "raise concentration"
    )


def _split_lengths(num_tokens: tuple[int, int, int] | int) -> tuple[int, int, int]:
    if isinstance(num_tokens, int | np.integer):
        train = int(num_tokens)
        lengths = (train, max(1, train // 10), max(1, train // 10))
    else:
        lengths = tuple(int(n) for n in num_tokens)
        if len(lengths) != 3:
            raise ValueError(
                f"markov_corpus: num_tokens={num_tokens!r} has {len(lengths)} entries; expected "
                "an int (train length) or (train, valid, test)"
            )
    if min(lengths) < 1:
        raise ValueError(f"markov_corpus: num_tokens={num_tokens!r}; every split needs >= 1 token")
    return lengths  # type: ignore[return-value]


def markov_corpus(
    vocab_size: int,
    num_tokens: tuple[int, int, int] | int,
    *,
    seed: int,
    concentration: float = 0.1,
    order: int = 1,
) -> tuple[Corpus, float]:
    """Samples a corpus from a random Markov chain and returns its exact entropy rate.

    Each context's next-token distribution is drawn from a symmetric Dirichlet(``concentration``);
    small concentrations give peaked, learnable transitions. One chain, started from its
    stationary distribution, is sampled and cut into train, valid and test in that order.

    Args:
        vocab_size: number of distinct tokens ``V``; words are ``"w0"`` ... ``"w{V-1}"`` and
            word ``"wi"`` has id ``i``.
        num_tokens: ``(train, valid, test)`` lengths, or an int giving the training length
            (valid and test then get a tenth of it each).
        seed: seed of the numpy Generator; the same arguments give the same corpus.
        concentration: Dirichlet concentration of each transition row (> 0).
        order: number of previous tokens the next one depends on (1: first-order chain).

    Returns:
        ``(corpus, entropy_rate)``: the corpus and ``H`` in nats per token, the best
        per-token cross entropy any model can reach (perplexity floor ``exp(H)``).
    """
    if not isinstance(vocab_size, int | np.integer) or vocab_size < 2:
        raise ValueError(f"markov_corpus: vocab_size={vocab_size!r}; expected an int >= 2")
    if not isinstance(order, int | np.integer) or order < 1:
        raise ValueError(f"markov_corpus: order={order!r}; expected an int >= 1")
    if not concentration > 0:
        raise ValueError(f"markov_corpus: concentration={concentration!r}; expected > 0")
    num_contexts = int(vocab_size) ** int(order)
    if num_contexts * vocab_size > _MAX_TRANSITIONS:
        raise ValueError(
            f"markov_corpus: vocab_size**(order+1) = {num_contexts * vocab_size} transition "
            f"probabilities is too many (at most {_MAX_TRANSITIONS}); lower vocab_size or order"
        )
    lengths = _split_lengths(num_tokens)

    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.full(vocab_size, float(concentration)), size=num_contexts)
    # Dirichlet rows with tiny concentration can hold exact zeros; 0 log 0 = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(transitions > 0, transitions * np.log(transitions), 0.0)
    pi = stationary_distribution(transitions)
    entropy_rate = float(-(pi * plogp.sum(axis=1)).sum())

    total = sum(lengths)
    cdf = np.cumsum(transitions, axis=1)
    cdf[:, -1] = 1.0  # guards against rounding: a uniform draw always lands in some bin
    uniforms = rng.random(total)
    context = int(rng.choice(num_contexts, p=pi / pi.sum()))
    tokens = np.empty(total, dtype=np.int32)
    for t in range(total):
        token = int(cdf[context].searchsorted(uniforms[t], side="right"))
        tokens[t] = token
        context = (context * vocab_size + token) % num_contexts

    vocab = Vocabulary(tuple(f"w{i}" for i in range(vocab_size)))
    train_end, valid_end = lengths[0], lengths[0] + lengths[1]
    corpus = Corpus(tokens[:train_end], tokens[train_end:valid_end], tokens[valid_end:], vocab)
    return corpus, entropy_rate
