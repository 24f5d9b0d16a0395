"""A trained language model back from its run folder: model, parameters, vocabulary, samples.

A run folder that :func:`load_language_model_run` reads holds

* ``model.json``: the model's description (:func:`build_language_model`'s ``spec``);
* ``vocab.txt``: the vocabulary, one word per line in id order;
* ``checkpoints/``: the :class:`~jaxrnn.train.Checkpointer` steps of a
  :class:`~jaxrnn.train.TrainState`; only its ``params`` are read;
* ``config.json`` (optional): the run's settings, returned as they are.

``experiments/ptb_lm.py`` writes all four; :func:`write_language_model_files` writes the
first two for a model trained with your own loop. Example::

    run = load_language_model_run("runs/ptb_small")
    print(" ".join(run.sample("the company", 20, seed=0)))
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.cells import LSTM
from jaxrnn.data import EOS, Vocabulary
from jaxrnn.decoding import generate
from jaxrnn.nn.language_model import LanguageModel
from jaxrnn.nn.stack import StackedRNN
from jaxrnn.train.checkpoint import Checkpointer

__all__ = ["LanguageModelRun", "build_language_model", "load_language_model_run",
           "write_language_model_files"]

MODEL_FILE = "model.json"
VOCABULARY_FILE = "vocab.txt"
_FORMAT = "jaxrnn.language_model_run/1"
_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
_SPEC_KEYS = {"vocab_size", "hidden_size", "embed_size", "num_layers", "dropout", "init_scale",
              "tie_weights", "forget_bias", "compute_dtype"}


def build_language_model(spec: Mapping[str, Any]) -> Any:
    """The :class:`jaxrnn.LanguageModel` a spec describes: embedding, a
    ``num_layers`` :class:`jaxrnn.StackedRNN` of :class:`jaxrnn.LSTM`, softmax.

    Args:
      spec: a JSON-able mapping with ``vocab_size``, ``hidden_size`` and optionally
        ``embed_size`` (default ``hidden_size``), ``num_layers`` (1), ``dropout`` (0.0: on the
        embedding output, between layers and before the softmax), ``init_scale`` (``None``:
        every parameter uniform in +-init_scale), ``tie_weights`` (False), ``forget_bias``
        (0.0) and ``compute_dtype`` (``"float32"`` or ``"bfloat16"``: the matmul operands).

    Returns:
      The model (hyperparameters only; ``model.init(key)`` makes parameters).

    Raises:
      ValueError: naming an unknown key, a missing one, or a bad ``compute_dtype``.
    """
    where = "build_language_model"
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where}: spec is {type(spec).__name__}; expected a mapping")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    missing = sorted({"vocab_size", "hidden_size"} - set(spec))
    if unknown or missing:
        raise ValueError(f"{where}: spec has unknown keys {unknown} and lacks {missing}; "
                         f"expected keys among {sorted(_SPEC_KEYS)}")
    dtype_name = spec.get("compute_dtype", "float32")
    if dtype_name not in _DTYPES:
        raise ValueError(f"{where}: compute_dtype={dtype_name!r}; expected one of "
                         f"{sorted(_DTYPES)}")
    hidden, dropout = spec["hidden_size"], spec.get("dropout", 0.0)
    cell = LSTM(hidden, forget_bias=spec.get("forget_bias", 0.0),
                       compute_dtype=_DTYPES[dtype_name])
    rnn = StackedRNN(cell, num_layers=spec.get("num_layers", 1), dropout=dropout)
    return LanguageModel(
        spec["vocab_size"], rnn, embed_size=spec.get("embed_size", hidden), dropout=dropout,
        tie_weights=spec.get("tie_weights", False), init_scale=spec.get("init_scale"))


def write_language_model_files(out: str | os.PathLike, spec: Mapping[str, Any],
                               vocab: Any) -> None:
    """Writes ``model.json`` and ``vocab.txt`` into the run folder ``out`` (created if
    missing), so that :func:`load_language_model_run` can rebuild the model.

    Args:
      out: the run folder; its ``checkpoints/`` hold the training states.
      spec: the model's description, as for :func:`build_language_model` (checked here).
      vocab: a :class:`jaxrnn.data.Vocabulary` (or any sequence of words in id order) of
        ``spec["vocab_size"]`` words, none empty or with whitespace.
    """
    where = "write_language_model_files"
    model = build_language_model(spec)
    words = list(vocab)
    if len(words) != model.vocab_size:
        raise ValueError(f"{where}: vocab has {len(words)} words; spec has "
                         f"vocab_size={model.vocab_size}")
    bad = [w for w in words if not isinstance(w, str) or not w or len(w.split()) != 1
           or w.strip() != w]
    if bad:
        raise ValueError(f"{where}: vocab words must be non-empty strings without whitespace; "
                         f"got {bad[:5]!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / MODEL_FILE, json.dumps({"format": _FORMAT, "model": dict(spec)},
                                               indent=2) + "\n")
    _write_atomic(out / VOCABULARY_FILE, "".join(f"{w}\n" for w in words))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class LanguageModelRun:
    """A trained language model: what :func:`load_language_model_run` returns.

    Attributes:
      model: the :class:`jaxrnn.LanguageModel`.
      params: its parameters from the checkpoint.
      vocab: the :class:`jaxrnn.data.Vocabulary` the token ids index.
      step: the checkpoint's step (updates done).
      config: the run's ``config.json`` (``{}`` when the folder has none).
      spec: the model's description (``model.json``).
    """

    model: Any
    params: Any
    vocab: Any
    step: int
    config: dict[str, Any]
    spec: dict[str, Any]

    def sample(self, prompt: str | Sequence[str], num_tokens: int, *, seed: int = 0,
               temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None) -> list[str]:
        """Continues ``prompt`` by ``num_tokens`` words (:func:`jaxrnn.decoding.generate`).

        Args:
          prompt: words, as one string split on whitespace or a sequence; empty: start after
            an end of sentence (``"<eos>"``, which the vocabulary must hold).
          num_tokens: words to generate (>= 1).
          seed: seeds ``jax.random.PRNGKey``: the same seed gives the same words.
          temperature: divides the logits; ``0`` is greedy (the most likely word each step).
          top_k: draw among the ``top_k`` most likely words only (``None``: all).
          top_p: draw among the smallest set of words whose probability reaches ``top_p``.

        Returns:
          The generated words (the prompt not included).

        Raises:
          ValueError: a prompt word is not in the vocabulary, or a bad argument.
        """
        where = "LanguageModelRun.sample"
        words = prompt.split() if isinstance(prompt, str) else list(prompt)
        if not words:
            if EOS not in self.vocab:
                raise ValueError(f"{where}: prompt is empty and the vocabulary has no "
                                 f"{EOS!r} to start from; give one or more words")
            words = [EOS]
        unknown = [w for w in words if w not in self.vocab]
        if unknown:
            raise ValueError(f"{where}: prompt words {unknown} are not in the run's "
                             f"vocabulary ({len(self.vocab)} words)")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"{where}: seed is {type(seed).__name__}; expected an int")
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"{where}: num_tokens must be a positive int; got {num_tokens!r}")
        for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)):
            if not (value is None or isinstance(value, int | float)):  # static under jit
                raise TypeError(f"{where}: {name} is {type(value).__name__}; expected a number")
        ids = jnp.asarray(self.vocab.encode(words))[None, :]
        tokens = _generate(self.model, self.params, ids, jax.random.PRNGKey(seed),
                           num_tokens=num_tokens, temperature=temperature, top_k=top_k,
                           top_p=top_p)
        return self.vocab.decode(jax.device_get(tokens)[0])


@functools.partial(jax.jit, static_argnames=("model", "num_tokens", "temperature", "top_k",
                                             "top_p"))
def _generate(model: Any, params: Any, ids: jax.Array, key: jax.Array, *, num_tokens: int,
              temperature: float, top_k: int | None, top_p: float | None) -> jax.Array:
    """One compilation per model, prompt length and decoding settings."""
    state = model.initial_state(params, ids.shape[0])
    return generate(functools.partial(model.step, params), state, ids, num_tokens,
                             key, temperature=temperature, top_k=top_k, top_p=top_p)[0]


def load_language_model_run(out: str | os.PathLike, *, step: int | None = None
                            ) -> LanguageModelRun:
    """Restores a trained language model from its run folder (see the module docstring).

    Nothing in the folder changes, so a run still training there can be sampled.

    Args:
      out: the run folder (``--out`` of ``experiments/ptb_lm.py``).
      step: which checkpoint; ``None`` for the latest.

    Returns:
      A :class:`LanguageModelRun`: ``model``, ``params``, ``vocab``, ``step``, ``config``.

    Raises:
      FileNotFoundError: naming the file or folder the run lacks.
      ValueError: if the files disagree with each other or with the checkpoint.
    """
    where = "load_language_model_run"
    out = Path(out)
    if not (out / MODEL_FILE).exists():
        raise FileNotFoundError(
            f"{where}: {out} holds no language-model run ({MODEL_FILE} is missing; "
            "experiments/ptb_lm.py writes it, write_language_model_files for your own loop)")
    description = json.loads((out / MODEL_FILE).read_text())
    if description.get("format") != _FORMAT:
        raise ValueError(f"{where}: {out / MODEL_FILE} has format "
                         f"{description.get('format')!r}; expected {_FORMAT!r}")
    spec = description["model"]
    model = build_language_model(spec)
    vocab_path = out / VOCABULARY_FILE
    if not vocab_path.exists():
        raise FileNotFoundError(f"{where}: {vocab_path} is missing")
    vocab = Vocabulary(tuple(vocab_path.read_text().splitlines()))
    if len(vocab) != model.vocab_size:
        raise ValueError(f"{where}: {vocab_path} has {len(vocab)} words; {MODEL_FILE} says "
                         f"vocab_size={model.vocab_size}")
    config_path = out / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    like = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    with Checkpointer(out / "checkpoints", read_only=True) as checkpointer:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{where}: {out / 'checkpoints'} holds no checkpoint yet")
        params = checkpointer.restore_entry("params", step, like=like)
    return LanguageModelRun(model, params, vocab, int(step), config, dict(spec))
