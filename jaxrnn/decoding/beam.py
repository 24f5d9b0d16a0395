"""Beam search over a step function ``step_fn(state, tokens int [N]) -> (state, logits [N, V])``.

Beam search keeps the K best partial hypotheses per example by total log-probability
(Graves, 2012; Sutskever, Vinyals & Le, 2014); finished hypotheses (those that produced
``end_token``) are frozen; the final choice divides the score by the length penalty of
Wu et al. (2016), ``((5 + length) / 6) ** alpha`` (``alpha = 0``: raw log-probability).
The state contract is that of :mod:`jaxrnn.decoding.sampling`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn.decoding.sampling import StepFn, _check_logits, _check_state

__all__ = ["BeamResult", "beam_search"]


class BeamResult(NamedTuple):
    """Beam search output for B examples and K beams, best first.

    Attributes:
        tokens: int32 ``[B, K, max_len]``; after a hypothesis's ``end_token`` every position
            holds ``end_token``.
        scores: float32 ``[B, K]``, total log-probability divided by the length penalty.
        log_probs: float32 ``[B, K]``, total log-probability (end token included).
        lengths: int32 ``[B, K]``, tokens up to and including the first ``end_token``
            (``max_len`` if none).
    """

    tokens: jax.Array
    scores: jax.Array
    log_probs: jax.Array
    lengths: jax.Array

    @property
    def best(self) -> jax.Array:
        """int32 ``[B, max_len]``: the highest-scoring hypothesis of each example."""
        return self.tokens[:, 0]


def beam_search(
    step_fn: StepFn,
    state: Any,
    start_tokens: jax.Array,
    *,
    beam_size: int,
    max_len: int,
    end_token: int,
    length_penalty: float = 0.0,
) -> BeamResult:
    """Beam search over ``step_fn`` for a batch of B examples.

    Every leaf of ``state`` is tiled to ``B * beam_size`` rows (example-major) and reordered
    with the surviving beams at each step. At step 0 only one beam per example is live, so
    the first expansion picks the ``beam_size`` best distinct first tokens. A finished beam
    can only extend itself by ``end_token`` at log-probability 0, so its score is frozen.

    Args:
        step_fn: ``(state, tokens [N]) -> (state, logits [N, V])``, N = B * beam_size.
        state: initial state for the B examples (leading axis B on every leaf).
        start_tokens: int ``[B]``, the first input token (e.g. a start-of-sequence id).
        beam_size: K >= 1 (1 is greedy decoding).
        max_len: tokens generated per hypothesis (>= 1).
        end_token: id that ends a hypothesis.
        length_penalty: alpha of Wu et al. (2016): the final ranking divides the
            log-probability by ``((5 + length) / 6) ** alpha``; 0 ranks by log-probability.

    Returns:
        A :class:`BeamResult`, beams sorted best first.
    """
    where = "beam_search"
    _checks.check_positive_int(where, "beam_size", beam_size)
    _checks.check_positive_int(where, "max_len", max_len)
    _checks.check_int_array(where, "start_tokens", start_tokens, (None,))
    if not isinstance(end_token, int | np.integer) or isinstance(end_token, bool) or end_token < 0:
        raise ValueError(f"{where}: end_token must be an int >= 0; got {end_token!r}")
    if not isinstance(length_penalty, int | float) or length_penalty < 0:
        raise ValueError(f"{where}: length_penalty must be >= 0; got {length_penalty!r}")
    batch, k = start_tokens.shape[0], int(beam_size)
    _check_state(where, state, batch)
    state = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), state)
    tokens = jnp.repeat(jnp.asarray(start_tokens, jnp.int32), k)
    neg_inf = jnp.full((), -jnp.inf, jnp.float32)
    log_probs = jnp.where(jnp.arange(k) == 0, jnp.float32(0.0), neg_inf)
    log_probs = jnp.broadcast_to(log_probs, (batch, k))
    finished = jnp.zeros((batch, k), bool)
    history = jnp.zeros((batch, k, max_len), jnp.int32)
    lengths = jnp.zeros((batch, k), jnp.int32)
    rows = jnp.arange(batch)[:, None]

    def expand(carry, t):
        state, tokens, log_probs, finished, history, lengths = carry
        state, logits = step_fn(state, tokens)
        _check_logits(where, logits)
        vocab = logits.shape[-1]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(batch, k, vocab)
        only_end = jnp.where(jnp.arange(vocab) == end_token, jnp.float32(0.0), neg_inf)[None, None]
        logp = jnp.where(finished[:, :, None], only_end, logp)
        total = (log_probs[:, :, None] + logp).reshape(batch, k * vocab)
        log_probs, flat = jax.lax.top_k(total, k)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        history = history[rows, parent].at[:, :, t].set(token)
        was_finished = finished[rows, parent]
        lengths = lengths[rows, parent] + jnp.where(was_finished, 0, 1).astype(jnp.int32)
        finished = was_finished | (token == end_token)
        gather = (rows * k + parent).reshape(-1)
        state = jax.tree.map(lambda x: x[gather], state)
        return (state, token.reshape(-1), log_probs, finished, history, lengths), None

    carry = (state, tokens, log_probs, finished, history, lengths)
    carry, _ = jax.lax.scan(expand, carry, jnp.arange(max_len))
    _, _, log_probs, _, history, lengths = carry
    penalty = ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** jnp.float32(length_penalty)
    scores = log_probs / penalty
    order = jnp.argsort(-scores, axis=-1)
    return BeamResult(
        tokens=history[rows, order],
        scores=jnp.take_along_axis(scores, order, axis=-1),
        log_probs=jnp.take_along_axis(log_probs, order, axis=-1),
        lengths=jnp.take_along_axis(lengths, order, axis=-1),
    )
