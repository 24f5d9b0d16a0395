"""Decoding from a model that maps one token to next-token logits: sampling and beam search.

Everything here is generic over a step function

    step_fn(state, tokens int [N]) -> (state, logits [N, V])

with ``state`` any pytree whose leaves all have the leading batch axis N; for a
:class:`jaxrnn.nn.language_model.LanguageModel` that is ``functools.partial(model.step, params)``
(one step of the whole stack, :meth:`jaxrnn.StackedRNN.step`). A decoder with attention fits
the same shape with the encoder memory kept in its state. The loops use ``jax.lax.scan``, so
wrap the caller in ``jax.jit`` to compile the whole generation once.

Logit filters (applied in this order, then one categorical draw per row):

- temperature T: ``logits / T`` (T -> 0 is greedy; ``temperature=0`` takes the argmax);
- top-k (Fan, Lewis & Dauphin, 2018): keep the k largest logits;
- top-p, "nucleus" (Holtzman et al., 2020): keep the smallest set of tokens, taken in order of
  decreasing probability, whose total probability reaches p.

Beam search keeps the K best partial hypotheses per example by total log-probability
(Graves, 2012; Sutskever, Vinyals & Le, 2014); finished hypotheses (those that produced
``end_token``) are frozen; the final choice divides the score by the length penalty of
Wu et al. (2016), ``((5 + length) / 6) ** alpha`` (``alpha = 0``: raw log-probability).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks

__all__ = ["filter_logits", "generate", "sample_logits"]

StepFn = Callable[[Any, jax.Array], tuple[Any, jax.Array]]


def _check_filters(where: str, temperature, top_k, top_p) -> None:
    if not isinstance(temperature, int | float | np.floating) or temperature < 0:
        raise ValueError(f"{where}: temperature must be a number >= 0; got {temperature!r}")
    if top_k is not None and (
        not isinstance(top_k, int | np.integer) or isinstance(top_k, bool) or top_k < 1
    ):
        raise ValueError(f"{where}: top_k must be a positive int or None; got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, int | float | np.floating)
                              or not 0.0 < top_p <= 1.0):
        raise ValueError(f"{where}: top_p must lie in (0, 1] or be None; got {top_p!r}")


def _check_logits(where: str, logits) -> None:
    _checks.check_float(where, "logits", logits)
    if np.ndim(logits) != 2:
        raise ValueError(
            f"{where}: logits has shape {tuple(np.shape(logits))}; expected [batch, vocab_size]"
        )


def filter_logits(
    logits: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> jax.Array:
    """Temperature, then top-k, then top-p (nucleus) filtering of logits [B, V].

    Args:
        logits: unnormalised log-probabilities, shape ``[B, V]``.
        temperature: divide the logits by this (> 0; 0 is handled by :func:`sample_logits`
            as the argmax and is passed through unchanged here).
        top_k: keep the ``top_k`` largest logits per row (ties at the k-th value are kept);
            ``None`` keeps all. ``top_k >= V`` keeps all.
        top_p: keep the smallest prefix of the tokens sorted by decreasing probability whose
            probability sum reaches ``top_p`` (the most likely token is always kept);
            ``None`` or 1 keeps all.

    Returns:
        float32 logits ``[B, V]`` with the removed entries set to ``-inf``.

    Raises:
        ValueError/TypeError: on a bad argument (named in the message).
    """
    where = "filter_logits"
    _check_logits(where, logits)
    _check_filters(where, temperature, top_k, top_p)
    logits = logits.astype(jnp.float32)
    if temperature > 0:
        logits = logits / jnp.float32(temperature)
    vocab = logits.shape[-1]
    neg_inf = jnp.full((), -jnp.inf, jnp.float32)
    if top_k is not None and top_k < vocab:
        kth = jax.lax.top_k(logits, int(top_k))[0][:, -1:]
        logits = jnp.where(logits >= kth, logits, neg_inf)
    if top_p is not None and top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # probability mass ranked above each token
        keep_sorted = before < jnp.float32(top_p)
        rows = jnp.arange(logits.shape[0])[:, None]
        keep = jnp.zeros(logits.shape, bool).at[rows, order].set(keep_sorted)
        logits = jnp.where(keep, logits, neg_inf)
    return logits


def sample_logits(
    key: jax.Array,
    logits: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> jax.Array:
    """One token per row of logits [B, V]: filtered by :func:`filter_logits`, then drawn.

    ``temperature=0`` returns the argmax (greedy decoding) and ignores ``key``.

    Returns:
        int32 token ids ``[B]``.
    """
    where = "sample_logits"
    _check_logits(where, logits)
    _check_filters(where, temperature, top_k, top_p)
    if temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)


def _check_state(where: str, state, batch: int) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if np.ndim(leaf) < 1 or np.shape(leaf)[0] != batch:
            raise ValueError(
                f"{where}: state leaf state{jax.tree_util.keystr(path)} has shape "
                f"{tuple(np.shape(leaf))}; expected a leading batch axis of size {batch}"
            )


def generate(
    step_fn: StepFn,
    state: Any,
    prompt: jax.Array,
    num_tokens: int,
    key: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> tuple[jax.Array, Any]:
    """Feeds a prompt through ``step_fn`` one token at a time, then samples ``num_tokens``.

    The prompt's last token produces the logits of the first sampled token; every sampled
    token is fed back as the next input (ancestral sampling).

    Args:
        step_fn: ``(state, tokens [B]) -> (state, logits [B, V])``.
        state: the initial state, leaves with leading axis B.
        prompt: int ``[B, P]`` with ``P >= 1`` (e.g. a start token, or encoded text).
        num_tokens: tokens to generate after the prompt (>= 1).
        key: PRNG key (unused when ``temperature=0``).
        temperature: see :func:`filter_logits`.
        top_k: see :func:`filter_logits`.
        top_p: see :func:`filter_logits`.

    Returns:
        ``(tokens int32 [B, num_tokens], final state)``.
    """
    where = "generate"
    _check_filters(where, temperature, top_k, top_p)
    _checks.check_positive_int(where, "num_tokens", num_tokens)
    _checks.check_int_array(where, "prompt", prompt, (None, None))
    if prompt.shape[1] < 1:
        raise ValueError(f"{where}: prompt has shape {tuple(prompt.shape)}; expected [B, P >= 1]")
    _check_state(where, state, prompt.shape[0])
    prompt = jnp.asarray(prompt, jnp.int32)

    def feed(state, token):
        return step_fn(state, token)[0], None

    state, _ = jax.lax.scan(feed, state, prompt[:, :-1].T)
    state, logits = step_fn(state, prompt[:, -1])
    _check_logits(where, logits)

    def draw(carry, step_key):
        state, logits = carry
        token = sample_logits(step_key, logits, temperature=temperature, top_k=top_k,
                              top_p=top_p)
        state, logits = step_fn(state, token)
        return (state, logits), token

    (state, _), tokens = jax.lax.scan(draw, (state, logits), jax.random.split(key, num_tokens))
    return tokens.T, state
