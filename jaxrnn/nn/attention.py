"""Attention over a sequence of encoder states, as pure functions for ONE example.

A decoder state (the *query*) q [Q] scores each encoder state (a *key*) k_j [K], j < S; a
softmax over the valid positions gives the weights, and the context is the weighted sum of the
values (the encoder states themselves)::

    e_j     = score(q, k_j)
    a_j     = exp(e_j) / sum_{l : mask_l} exp(e_l)      (a_j = 0 where mask_j is False)
    context = sum_j a_j k_j

Scores:

- additive (Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning to Align
  and Translate", ICLR 2015, eq. 6 and appendix A.1.2)::

      e_j = v^T tanh(W_q q + W_k k_j + b)

  ``W_k k_j`` does not depend on the query, so :func:`project_keys` computes it once per
  source sequence and every decoder step reuses it.
- dot (Luong, Pham & Manning, "Effective Approaches to Attention-based Neural Machine
  Translation", EMNLP 2015, section 3.1, "dot")::

      e_j = q^T k_j          (Q == K; optionally divided by sqrt(K), Vaswani et al., 2017)

- general (Luong et al. 2015, "general"): ``e_j = q^T W_a k_j``, i.e. dot attention on
  ``project_keys``-style projected keys.

Batch with ``jax.vmap``. Parameters of the additive score: ``{"w_query": [A, Q],
"w_key": [A, K], "bias": [A], "v": [A]}`` with attention size A.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks

__all__ = [
    "additive_attention",
    "additive_scores",
    "dot_attention",
    "init_additive",
    "masked_softmax",
    "project_keys",
]


def init_additive(
    key: jax.Array, query_size: int, key_size: int, attention_size: int
) -> dict[str, jax.Array]:
    """Parameters of Bahdanau's additive score, uniform in +-1/sqrt(fan_in) (PyTorch Linear).

    Returns:
        ``{"w_query": [A, Q], "w_key": [A, K], "bias": [A], "v": [A]}``.
    """
    where = "init_additive"
    for name, value in (("query_size", query_size), ("key_size", key_size),
                        ("attention_size", attention_size)):
        _checks.check_positive_int(where, name, value)
    kq, kk, kv = jax.random.split(key, 3)

    def uniform(k, shape, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

    return {
        "w_query": uniform(kq, (attention_size, query_size), query_size),
        "w_key": uniform(kk, (attention_size, key_size), key_size),
        "bias": jnp.zeros((attention_size,), jnp.float32),
        "v": uniform(kv, (attention_size,), attention_size),
    }


def _check_keys(where: str, keys, mask) -> None:
    _checks.check_float(where, "keys", keys)
    if np.ndim(keys) != 2:
        raise ValueError(
            f"{where}: keys has shape {tuple(np.shape(keys))}; expected [S, key_size] for one "
            "example (use jax.vmap for a batch)"
        )
    if mask is not None:
        _checks.check_bool_array(where, "mask", mask, (np.shape(keys)[0],))


def _check_query(where: str, query, size: int, what: str) -> None:
    _checks.check_float(where, "query", query)
    _checks.check_shape(where, "query", query, (size,),
                        hint=f"= ({what},) for one example; use jax.vmap for a batch")


def masked_softmax(scores: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Softmax of scores [S] over the positions where ``mask`` is True (zero elsewhere).

    An all-False mask gives all-zero weights (and a zero context), not NaN.
    """
    where = "masked_softmax"
    _checks.check_float(where, "scores", scores)
    if np.ndim(scores) != 1:
        raise ValueError(f"{where}: scores has shape {tuple(np.shape(scores))}; expected [S]")
    if mask is None:
        return jax.nn.softmax(scores)
    _checks.check_bool_array(where, "mask", mask, np.shape(scores))
    low = jnp.full((), jnp.finfo(scores.dtype).min, scores.dtype)
    shifted = jnp.where(mask, scores, low)
    shifted = shifted - jax.lax.stop_gradient(jnp.max(shifted))
    weights = jnp.where(mask, jnp.exp(shifted), jnp.zeros((), scores.dtype))
    total = jnp.sum(weights)
    return weights / jnp.where(total > 0, total, jnp.ones((), scores.dtype))


def project_keys(params: dict[str, jax.Array], keys: jax.Array) -> jax.Array:
    """``W_k k_j`` for every j: keys [S, K] -> [S, A]; compute once per source sequence."""
    where = "project_keys"
    _check_keys(where, keys, None)
    _checks.check_shape(where, "keys", keys, (None, params["w_key"].shape[1]),
                        hint="= [S, key_size] as in init_additive")
    return keys @ params["w_key"].T


def additive_scores(
    params: dict[str, jax.Array], query: jax.Array, projected_keys: jax.Array
) -> jax.Array:
    """Bahdanau's ``e_j = v^T tanh(W_q q + W_k k_j + b)`` -> scores [S].

    Args:
        params: from :func:`init_additive`.
        query: q [Q].
        projected_keys: ``project_keys(params, keys)``, [S, A].
    """
    where = "additive_scores"
    _check_query(where, query, params["w_query"].shape[1], "query_size")
    _checks.check_shape(where, "projected_keys", projected_keys,
                        (None, params["w_query"].shape[0]), hint="= [S, attention_size]")
    hidden = jnp.tanh(projected_keys + (params["w_query"] @ query + params["bias"])[None, :])
    return hidden @ params["v"]


def additive_attention(
    params: dict[str, jax.Array],
    query: jax.Array,
    keys: jax.Array,
    mask: jax.Array | None = None,
    *,
    projected_keys: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Bahdanau et al. (2015) additive attention for one query.

    Args:
        params: from :func:`init_additive`.
        query: q [Q] (Bahdanau: the previous decoder state s_{i-1}).
        keys: encoder states [S, K] (also the values).
        mask: bool [S], True at valid source positions; ``None``: all valid.
        projected_keys: ``project_keys(params, keys)`` if already computed.

    Returns:
        ``(context [K], weights [S])``.
    """
    where = "additive_attention"
    _check_keys(where, keys, mask)
    if projected_keys is None:
        projected_keys = project_keys(params, keys)
    weights = masked_softmax(additive_scores(params, query, projected_keys), mask)
    return weights @ keys, weights


def dot_attention(
    query: jax.Array,
    keys: jax.Array,
    mask: jax.Array | None = None,
    *,
    scaled: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Luong et al. (2015) dot-product attention for one query: ``e_j = q^T k_j``.

    Args:
        query: q [K] (Luong: the current decoder state h_t), the size of a key.
        keys: encoder states [S, K] (also the values).
        mask: bool [S], True at valid source positions; ``None``: all valid.
        scaled: divide the scores by sqrt(K) (Vaswani et al., 2017).

    Returns:
        ``(context [K], weights [S])``.
    """
    where = "dot_attention"
    _check_keys(where, keys, mask)
    _check_query(where, query, keys.shape[1], "key_size")
    scores = keys @ query
    if scaled:
        scores = scores / jnp.asarray(math.sqrt(keys.shape[1]), scores.dtype)
    weights = masked_softmax(scores, mask)
    return weights @ keys, weights
