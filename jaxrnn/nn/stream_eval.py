"""Evaluation of a language model over one long token stream, the state carried throughout.

As Zaremba et al. (2014)'s code evaluates: the split is cut into ``batch_size`` rows (one row,
batch 1, in the paper), read window by window, each window starting from the previous window's
final state; every token but the first of each row is predicted once. Works with any model that
has ``loss(params, inputs, targets, state) -> (loss, (state, nll_sum))`` and
``initial_state(params, batch_size)`` (e.g. :class:`jaxrnn.nn.language_model.LanguageModel`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from jaxrnn.train.batching import batchify
from jaxrnn.train.step import evaluate, make_eval_step


def stream_evaluator(
    model, ids: np.ndarray, batch_size: int, window: int
) -> Callable[..., float]:
    """Returns ``evaluate(params) -> mean per-token NLL in nats`` over the whole stream ``ids``.

    Windows are ``window`` steps long; the last one is shorter when the stream does not divide
    (one extra compilation). Sums stay on the device until the end.
    """
    stream = batchify(ids, batch_size)
    inputs, targets = stream[:, :-1], stream[:, 1:]
    bounds = list(range(0, inputs.shape[1], window)) + [inputs.shape[1]]
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    windows = [(inputs[:, a:b], targets[:, a:b]) for a, b in pairs]

    def eval_fn(params, carry, batch):
        x, y = batch
        _, (carry, nll_sum) = model.loss(params, x, y, carry)
        return carry, {"nll_sum": nll_sum, "count": jnp.asarray(x.size, jnp.int32)}

    eval_step = make_eval_step(eval_fn)

    def mean_nll(params) -> float:
        sums = evaluate(eval_step, params, model.initial_state(params, batch_size), windows)
        return sums["nll_sum"] / sums["count"]

    return mean_nll
