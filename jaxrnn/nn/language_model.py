"""A recurrent language model: embedding -> stacked RNN -> softmax over the vocabulary.

The model of Zaremba, Sutskever & Vinyals, "Recurrent Neural Network Regularization" (2014)::

    e_t = E[w_t]                                   # embedding, size = embed_size
    h_t = StackedRNN(dropout(e_t))                 # dropout also between the layers
    p(w_{t+1} | w_<=t) = softmax(W dropout(h_t) + b)

with dropout on every non-recurrent connection (embedding output, between layers, before the
softmax) and none on the recurrent ones. With ``tie_weights`` the softmax weights are the
embedding matrix (Press & Wolf, 2017; Inan et al., 2017), which needs embed_size equal to the
RNN's output size.

``init_scale`` initialises every parameter, embedding and softmax included, uniformly in
[-init_scale, init_scale] as Zaremba's code does; None leaves the RNN's own initialiser and uses
U(-0.1, 0.1) for the embedding and the softmax.

Parameters: ``{"embedding": [V, E], "rnn": StackedRNN params, "softmax_w": [V, H_out]
(absent when tied), "softmax_b": [V]}``; params of another vocabulary or embedding size are
rejected with a message.

Token ids outside [0, V) (inputs and targets): concrete ids raise an ``IndexError`` naming the
argument, the first bad id and V. Under ``jax.jit`` their values are unknown; by default
(``id_checks="nan"``) an out-of-range input id embeds as NaN and an out-of-range target's NLL is
NaN, so the logits and the loss of that sequence become NaN (a training loop's non-finite-loss
check then stops the run) rather than silently using another token's row. With
``id_checks="checkify"`` every call also makes a ``jax.experimental.checkify`` check of the ids,
before the recurrent scan (a check inside a scan body would be dropped under ``jax.grad``); wrap
the function with ``checkify.checkify`` (e.g. ``checkify.checkify(jax.grad(loss))``) to get the
error as a value, whose ``.get()`` names the bad id.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxrnn import _checks
from jaxrnn.cells.initializers import Uniform
from jaxrnn.nn.losses import linear_cross_entropy, token_cross_entropy
from jaxrnn.nn.stack import StackedRNN, State, dropout

__all__ = ["LanguageModel", "token_cross_entropy"]


@dataclasses.dataclass(frozen=True)
class LanguageModel:
    """Embedding -> StackedRNN -> softmax; see the module docstring.

    Attributes:
      vocab_size: V.
      rnn: the recurrent stack (its ``dropout`` is the between-layer dropout).
      embed_size: E (Zaremba et al.: equal to the hidden size).
      dropout: dropout rate on the embedding output and before the softmax.
      tie_weights: share the embedding matrix with the softmax weights.
      init_scale: uniform initialisation range for every parameter (None: see module docs).
      id_checks: what out-of-range token ids do under ``jax.jit``: "nan" (NaN embeddings and
        NLLs) or "checkify" (also ``checkify.check`` calls; see the module docstring).
    """

    vocab_size: int
    rnn: StackedRNN
    embed_size: int
    dropout: float = 0.0
    tie_weights: bool = False
    init_scale: float | None = None
    id_checks: str = "nan"

    def __post_init__(self):
        where = "LanguageModel"
        _checks.check_fields(
            where, self, positive_ints=("vocab_size", "embed_size"), probabilities=("dropout",),
            bools=("tie_weights",),
        )
        if not isinstance(self.rnn, StackedRNN):
            raise TypeError(
                f"{where}: rnn is {type(self.rnn).__name__}; expected a jaxrnn.StackedRNN"
            )
        if self.init_scale is not None:
            _checks.check_real(where, "init_scale", self.init_scale, positive=True)
        if self.id_checks not in ("nan", "checkify"):
            raise ValueError(
                f"{where}: id_checks={self.id_checks!r}; expected 'nan' or 'checkify'"
            )
        if self.tie_weights and self.embed_size != self.rnn.output_size:
            raise ValueError(
                f"LanguageModel: tie_weights needs embed_size == rnn.output_size; got "
                f"embed_size={self.embed_size}, rnn.output_size={self.rnn.output_size}"
            )

    def init(self, key: jax.Array) -> dict[str, Any]:
        _checks.check_key("LanguageModel.init", key)
        k_emb, k_rnn, k_w, k_b = jax.random.split(key, 4)
        scale = 0.1 if self.init_scale is None else self.init_scale
        uniform = Uniform(scale)
        rnn = self.rnn
        if self.init_scale is not None:
            rnn = dataclasses.replace(
                rnn, cell=dataclasses.replace(rnn.cell, initializer=uniform)
            )
        v, e, h = self.vocab_size, self.embed_size, self.rnn.output_size
        params = {
            "embedding": uniform(k_emb, "input", (v, e), h, jnp.float32),
            "rnn": rnn.init(k_rnn, e),
            "softmax_b": uniform(k_b, "bias", (v,), h, jnp.float32),
        }
        if not self.tie_weights:
            params["softmax_w"] = uniform(k_w, "input", (v, h), h, jnp.float32)
        return params

    def initial_state(self, params, batch_size: int) -> State:
        self._check_params("LanguageModel.initial_state", params)
        return self.rnn.initial_state(params["rnn"], batch_size)

    def _check_params(self, where: str, params: Any) -> None:
        """Raises unless ``params`` has this model's keys and vocabulary/embedding shapes."""
        want = {"embedding", "rnn", "softmax_b"} | (set() if self.tie_weights else {"softmax_w"})
        if not isinstance(params, dict) or set(params) != want:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                f"{where}: params has keys {got}; expected {sorted(want)} (from "
                f"LanguageModel.init{', tie_weights=True' if self.tie_weights else ''})"
            )
        v, e = self.vocab_size, self.embed_size
        shapes = {"embedding": ((v, e), "(vocab_size, embed_size)"),
                  "softmax_b": ((v,), "(vocab_size,)")}
        if not self.tie_weights:
            shapes["softmax_w"] = ((v, self.rnn.output_size), "(vocab_size, rnn.output_size)")
        for name, (shape, meaning) in shapes.items():
            got = tuple(np.shape(params[name]))
            if got != shape:
                raise ValueError(
                    f"{where}: params[{name!r}] has shape {got}; expected {shape} = {meaning} "
                    f"for vocab_size={v} (params of another vocabulary or model size?)"
                )

    def _ids(self, where: str, name: str, ids: jax.Array) -> jax.Array:
        """Checks ids (concrete: an IndexError; checkify mode: a check); returns the mask of the
        ids in [0, V)."""
        v = self.vocab_size
        _checks.check_ids(where, name, ids, v)
        inside = (ids >= 0) & (ids < v)
        if self.id_checks == "checkify" and np.size(ids):
            first = jnp.argmin(inside.reshape(-1))
            checkify.check(
                jnp.all(inside), f"{where}: {name} holds an id outside [0, {v}): {{bad}}",
                bad=ids.reshape(-1)[first],
            )
        return inside

    def embed(self, params, tokens: jax.Array, *, where: str = "LanguageModel",
              name: str = "tokens") -> jax.Array:
        """Embedding rows of ``tokens`` (any shape); an id outside [0, V) embeds as NaN."""
        inside = self._ids(where, name, tokens)
        rows = params["embedding"][jnp.clip(tokens, 0, self.vocab_size - 1)]
        return jnp.where(inside[..., None], rows, jnp.nan)

    def apply(
        self,
        params,
        tokens: jax.Array,
        state: State | None = None,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        """tokens int [B, T] -> (logits [B, T, V], final state)."""
        h, state = self.features(params, tokens, state, key=key, train=train)
        w = params["embedding"] if self.tie_weights else params["softmax_w"]
        logits = jnp.einsum("bth,vh->btv", h, w) + params["softmax_b"][None, None, :]
        return logits, state

    def features(
        self,
        params,
        tokens: jax.Array,
        state: State | None = None,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, State]:
        """tokens int [B, T] -> (the softmax layer's inputs h [B, T, H_out], final state)."""
        where = "LanguageModel"  # apply, features and loss all check here
        dtype = getattr(tokens, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
            raise TypeError(f"{where}: tokens has dtype {dtype}; expected integer token ids")
        if np.ndim(tokens) != 2:
            raise ValueError(f"{where}: tokens has shape {np.shape(tokens)}; expected [B, T]")
        if train and self.dropout > 0 and key is None:
            raise ValueError(f"{where}: train=True with dropout needs a PRNG key; got key=None")
        self._check_params(where, params)
        k_in, k_rnn, k_out = jax.random.split(key, 3) if key is not None else (None,) * 3
        x = self.embed(params, tokens, where=where)
        if train:
            x = dropout(k_in, self.dropout, x)
        h, state = self.rnn.apply(params["rnn"], x, state, key=k_rnn, train=train)
        if train:
            h = dropout(k_out, self.dropout, h)
        return h, state

    def step(self, params, state: State, token: jax.Array) -> tuple[State, jax.Array]:
        """One token per sequence (int [B]) -> (state, logits [B, V]); for sampling."""
        where = "LanguageModel.step"
        _checks.check_int_array(where, "token", token, (None,))
        self._check_params(where, params)
        x = self.embed(params, token, where=where, name="token")
        state, h = self.rnn.step(params["rnn"], state, x)
        w = params["embedding"] if self.tie_weights else params["softmax_w"]
        return state, h @ w.T + params["softmax_b"][None, :]

    def loss(
        self, params, tokens, targets, state=None, *, key=None, train=False
    ) -> tuple[jax.Array, tuple[State, jax.Array]]:
        """Zaremba's training loss and the summed token NLL.

        Returns ``(loss, (final_state, nll_sum))`` where ``loss`` is the batch-mean cross entropy
        SUMMED over the unrolled steps (TensorFlow's sequence_loss averaged across the batch, then
        reduce_sum, as in the paper's code: lr 1.0 there is T times a per-token-mean lr), and
        ``nll_sum`` the sum over all B*T tokens (for per-token nats and perplexity). The softmax
        layer and the cross entropy run fused (:func:`jaxrnn.nn.losses.linear_cross_entropy`), its
        matmuls in the recurrent cell's ``compute_dtype`` (float32 unless the cell sets one).
        """
        _checks.check_int_array("LanguageModel.loss", "targets", targets, np.shape(tokens))
        self._ids("LanguageModel.loss", "targets", targets)  # before the scan (see module doc)
        h, state = self.features(params, tokens, state, key=key, train=train)
        w = params["embedding"] if self.tie_weights else params["softmax_w"]
        dtype = getattr(self.rnn.cell, "compute_dtype", None)
        nll = linear_cross_entropy(h, w, params["softmax_b"], targets, compute_dtype=dtype)
        return jnp.sum(jnp.mean(nll, axis=0)), (state, jnp.sum(nll))
