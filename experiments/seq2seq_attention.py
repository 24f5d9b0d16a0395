#!/usr/bin/env python
"""Sequence to sequence with attention: dates written in many formats -> ISO 8601 dates.

    python experiments/seq2seq_attention.py --out runs/dates                 # target: >= 99%
    python experiments/seq2seq_attention.py --attention luong --out runs/dates_luong
    python experiments/seq2seq_attention.py --smoke --out runs/smoke          # < 30 s
    python experiments/seq2seq_attention.py --out runs/dates --translate "Sat 4 Jul 1992"

Task: a translation-like problem generated on the fly (no download). A date uniformly drawn in
1950-01-01 .. 2049-12-31 is written in one of FORMATS (month names full or abbreviated, in
any case, weekday names, ordinals "the 5th of March", numeric "3/5/1987" (US: month first;
slashes always mean month/day), "05.03.1987" (dots always mean day.month), two-digit years
(pivot: 50-99 -> 19xx, 00-49 -> 20xx), compact "19870305"), 8 to 29 characters long; the
target is "1987-03-05". Held-out examples are fresh draws whose input strings never occur in
the training set. Exact match: the whole decoded string equals the ISO date.

Model (all pieces from jaxrnn):

- encoder: character embedding -> bidirectional LSTM (:class:`jaxrnn.StackedRNN` with
  ``bidirectional=True``, driven with ``lengths`` so padding never enters either direction);
  the memory is [h_fwd; h_bwd] per source position (size 2H).
- decoder: an LSTM of size 2H stepped with :meth:`jaxrnn.StackedRNN.step`, started from the
  concatenated final carries of the two encoder directions. ``--attention``:

  * ``bahdanau`` (Bahdanau, Cho & Bengio, ICLR 2015): the previous decoder state s_{i-1}
    queries the memory with the additive score ``v^T tanh(W_q s_{i-1} + W_k m_j)``; the
    context c_i enters the LSTM with the previous target character:
    ``s_i = LSTM(s_{i-1}, [E y_{i-1}; c_i])``.
  * ``luong`` (Luong, Pham & Manning, EMNLP 2015): the LSTM steps first with input feeding,
    ``s_i = LSTM(s_{i-1}, [E y_{i-1}; ht_{i-1}])``; then s_i queries the memory with the
    dot score ``s_i^T m_j``.

  Both then compute ``ht_i = tanh(W_c [c_i; s_i])`` and ``p(y_i) = softmax(W_o ht_i + b)``
  (Luong's attentional hidden state; Bahdanau's deep-output maxout is replaced by it).
  The attention functions are :mod:`jaxrnn.nn.attention`.
- training: teacher forcing (the reference previous character is fed), mean token cross
  entropy, Adam, through :func:`jaxrnn.train.run_training`.
- decoding: greedy (:func:`jaxrnn.decoding.generate` at temperature 0) and beam search
  (:func:`jaxrnn.decoding.beam_search`); ``exact_match`` in results.json is the beam's.

Outputs in --out: config.json, metrics.jsonl, loss.png, attention.png (attention matrices of
held-out examples: rows output characters, columns input characters), results.json
(exact_match, exact_match_greedy, exact_match_beam, per-format exact match, ...),
checkpoints/. Exit code 3 for a non-finite loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import attention, sampling, train
from jaxrnn.nn.language_model import token_cross_entropy
from jaxrnn.train.cli import run_for_script

TARGET = 0.99

# ---------------------------------------------------------------------------------------------
# Data: dates in many formats.

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _fields(d: datetime.date) -> dict[str, str]:
    return {"B": MONTHS[d.month - 1], "b": MONTHS[d.month - 1][:3], "A": WEEKDAYS[d.weekday()],
            "a": WEEKDAYS[d.weekday()][:3], "d": str(d.day), "dd": f"{d.day:02d}",
            "m": str(d.month), "mm": f"{d.month:02d}", "Y": str(d.year),
            "yy": f"{d.year % 100:02d}", "o": _ordinal(d.day)}


# name -> template over _fields; templates with letters are also drawn lower- and upper-case.
FORMATS: dict[str, str] = {
    "B d, Y": "{B} {d}, {Y}",
    "d B Y": "{d} {B} {Y}",
    "dd b Y": "{dd} {b} {Y}",
    "b d Y": "{b} {d} {Y}",
    "b. d, Y": "{b}. {d}, {Y}",
    "A, B d, Y": "{A}, {B} {d}, {Y}",
    "a dd b Y": "{a} {dd} {b} {Y}",
    "A d B Y": "{A} {d} {B} {Y}",
    "the o of B, Y": "the {o} of {B}, {Y}",
    "B o, Y": "{B} {o}, {Y}",
    "d-b-yy": "{d}-{b}-{yy}",
    "d b 'yy": "{d} {b} '{yy}",
    "m/d/Y": "{m}/{d}/{Y}",
    "mm/dd/yy": "{mm}/{dd}/{yy}",
    "dd.mm.Y": "{dd}.{mm}.{Y}",
    "Y/mm/dd": "{Y}/{mm}/{dd}",
    "Y-mm-dd": "{Y}-{mm}-{dd}",
    "Ymmdd": "{Y}{mm}{dd}",
}
FORMAT_NAMES = list(FORMATS)

SOURCE_CHARS = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,./-'")
SRC_PAD = 0
SRC_INDEX = {c: i + 1 for i, c in enumerate(SOURCE_CHARS)}
TGT_PAD, BOS, EOS = 0, 1, 2
TARGET_CHARS = "0123456789-"
TGT_INDEX = {c: i + 3 for i, c in enumerate(TARGET_CHARS)}
TGT_LEN = 11  # "YYYY-MM-DD" + EOS


def render(d: datetime.date, fmt: str, case: int) -> str:
    text = FORMATS[fmt].format(**_fields(d))
    return text.lower() if case == 1 else text.upper() if case == 2 else text


def draw_dates(rng: np.random.Generator, n: int, exclude: set[str] = frozenset()):
    """n (input, iso, format index) triples; inputs in ``exclude`` (and repeats) are redrawn."""
    span = LAST.toordinal() - FIRST.toordinal() + 1
    seen: set[str] = set()
    out = []
    while len(out) < n:
        d = datetime.date.fromordinal(FIRST.toordinal() + int(rng.integers(span)))
        fmt = int(rng.integers(len(FORMAT_NAMES)))
        text = render(d, FORMAT_NAMES[fmt], int(rng.integers(3)))
        if text in exclude or text in seen:
            continue
        seen.add(text)
        out.append((text, d.isoformat(), fmt))
    return out


class Split(NamedTuple):
    src: np.ndarray  # int32 [N, S], SRC_PAD after each length
    lengths: np.ndarray  # int32 [N]
    tgt_in: np.ndarray  # int32 [N, TGT_LEN]: BOS + ISO date
    tgt_out: np.ndarray  # int32 [N, TGT_LEN]: ISO date + EOS
    texts: list[str]
    isos: list[str]
    formats: np.ndarray  # int32 [N], index into FORMAT_NAMES


def encode_source(texts: list[str], width: int) -> tuple[np.ndarray, np.ndarray]:
    bad = sorted({c for t in texts for c in t if c not in SRC_INDEX})
    if bad:
        raise ValueError(f"characters {bad} are not in the source alphabet {SOURCE_CHARS!r}")
    too_long = [t for t in texts if len(t) > width]
    if too_long:
        raise ValueError(f"input {too_long[0]!r} is longer than the model's {width} characters")
    src = np.full((len(texts), width), SRC_PAD, np.int32)
    for i, t in enumerate(texts):
        src[i, :len(t)] = [SRC_INDEX[c] for c in t]
    return src, np.array([len(t) for t in texts], np.int32)


def make_split(examples, width: int) -> Split:
    texts, isos, fmts = (list(x) for x in zip(*examples, strict=True))
    src, lengths = encode_source(texts, width)
    iso_ids = np.array([[TGT_INDEX[c] for c in iso] for iso in isos], np.int32)
    n = len(texts)
    tgt_in = np.concatenate([np.full((n, 1), BOS, np.int32), iso_ids], axis=1)
    tgt_out = np.concatenate([iso_ids, np.full((n, 1), EOS, np.int32)], axis=1)
    return Split(src, lengths, tgt_in, tgt_out, texts, isos, np.array(fmts, np.int32))


def decode_target(ids) -> str:
    chars = []
    for i in np.asarray(ids).tolist():
        if i == EOS:
            break
        chars.append(TARGET_CHARS[i - 3] if i >= 3 else "?")
    return "".join(chars)


# ---------------------------------------------------------------------------------------------
# Model.


class DecoderState(NamedTuple):
    rnn: Any  # StackedRNN state of the decoder, batch B
    feed: jax.Array  # [B, 2H]: Luong's input feeding ht_{i-1} (zeros for Bahdanau)
    memory: jax.Array  # [B, S, 2H] encoder outputs
    projected: jax.Array  # [B, S, A] W_k m_j for Bahdanau ([B, S, 1] zeros for Luong)
    mask: jax.Array  # bool [B, S]: valid source positions
    weights: jax.Array  # [B, S]: attention weights of the last step


@dataclasses.dataclass(frozen=True)
class Seq2Seq:
    """Bidirectional LSTM encoder + attention LSTM decoder (see the module docstring)."""

    hidden_size: int  # H per encoder direction; the decoder has 2H
    embed_size: int
    attention_size: int
    kind: str  # "bahdanau" or "luong"

    @property
    def encoder(self) -> jaxrnn.StackedRNN:
        return jaxrnn.StackedRNN(jaxrnn.LSTM(self.hidden_size), bidirectional=True)

    @property
    def decoder(self) -> jaxrnn.StackedRNN:
        return jaxrnn.StackedRNN(jaxrnn.LSTM(2 * self.hidden_size))

    def init(self, key) -> dict:
        keys = jax.random.split(key, 6)
        e, h2 = self.embed_size, 2 * self.hidden_size
        v_in, v_out = len(SOURCE_CHARS) + 1, len(TARGET_CHARS) + 3
        params = {
            "src_embedding": 0.1 * jax.random.normal(keys[0], (v_in, e), jnp.float32),
            "tgt_embedding": 0.1 * jax.random.normal(keys[1], (v_out, e), jnp.float32),
            "encoder": self.encoder.init(keys[2], e),
            "decoder": self.decoder.init(keys[3], e + h2),
            "combine": jax.random.normal(keys[4], (h2, 2 * h2), jnp.float32) / np.sqrt(2 * h2),
            "out_w": jax.random.normal(keys[5], (v_out, h2), jnp.float32) / np.sqrt(h2),
            "out_b": jnp.zeros((v_out,), jnp.float32),
        }
        if self.kind == "bahdanau":
            params["attention"] = attention.init_additive(
                jax.random.fold_in(key, 7), h2, h2, self.attention_size)
        return params

    def encode(self, params, src, lengths) -> DecoderState:
        x = params["src_embedding"][src]
        memory, finals = self.encoder.apply(params["encoder"], x, lengths=lengths)
        fwd, bwd = finals[0]
        carry = jax.tree.map(lambda f, b: jnp.concatenate([f, b], axis=-1), fwd, bwd)
        batch, steps = src.shape
        mask = jnp.arange(steps)[None, :] < lengths[:, None]
        if self.kind == "bahdanau":
            projected = jax.vmap(attention.project_keys, in_axes=(None, 0))(
                params["attention"], memory)
        else:
            projected = jnp.zeros((batch, steps, 1), memory.dtype)
        return DecoderState(
            rnn=self.decoder.as_state(((carry,),)),
            feed=jnp.zeros((batch, memory.shape[-1]), memory.dtype),
            memory=memory, projected=projected, mask=mask,
            weights=jnp.zeros((batch, steps), memory.dtype))

    def step(self, params, state: DecoderState, tokens) -> tuple[DecoderState, jax.Array]:
        """One decoder step for tokens [B] -> (state, logits [B, V_out])."""
        emb = params["tgt_embedding"][tokens]
        if self.kind == "bahdanau":
            query = state.rnn[0][0].h
            context, weights = jax.vmap(
                lambda q, m, p, k: attention.additive_attention(
                    params["attention"], q, m, k, projected_keys=p)
            )(query, state.memory, state.projected, state.mask)
            rnn, h = self.decoder.step(params["decoder"], state.rnn,
                                       jnp.concatenate([emb, context], axis=-1))
        else:
            rnn, h = self.decoder.step(params["decoder"], state.rnn,
                                       jnp.concatenate([emb, state.feed], axis=-1))
            context, weights = jax.vmap(attention.dot_attention)(h, state.memory, state.mask)
        out = jnp.tanh(jnp.concatenate([context, h], axis=-1) @ params["combine"].T)
        logits = out @ params["out_w"].T + params["out_b"][None, :]
        return state._replace(rnn=rnn, feed=out, weights=weights), logits

    def teacher_forced(self, params, src, lengths, tgt_in):
        """-> (logits [B, T, V], attention weights [B, T, S]) feeding the reference tokens."""
        state = self.encode(params, src, lengths)

        def body(state, tokens):
            state, logits = self.step(params, state, tokens)
            return state, (logits, state.weights)

        _, (logits, weights) = jax.lax.scan(body, state, tgt_in.T)
        return jnp.swapaxes(logits, 0, 1), jnp.swapaxes(weights, 0, 1)

    def loss(self, params, batch):
        src, lengths, tgt_in, tgt_out = batch
        logits, _ = self.teacher_forced(params, src, lengths, tgt_in)
        nll = token_cross_entropy(logits, tgt_out)
        valid = (tgt_out != TGT_PAD).astype(jnp.float32)
        return jnp.sum(nll * valid), jnp.sum(valid)

    def greedy(self, params, src, lengths):
        state = self.encode(params, src, lengths)
        prompt = jnp.full((src.shape[0], 1), BOS, jnp.int32)
        tokens, _ = sampling.generate(functools.partial(self.step, params), state, prompt,
                                      TGT_LEN, jax.random.PRNGKey(0), temperature=0.0)
        return tokens

    def beam(self, params, src, lengths, beam_size: int, length_penalty: float):
        state = self.encode(params, src, lengths)
        start = jnp.full((src.shape[0],), BOS, jnp.int32)
        return sampling.beam_search(functools.partial(self.step, params), state, start,
                                    beam_size=beam_size, max_len=TGT_LEN, end_token=EOS,
                                    length_penalty=length_penalty).best


# ---------------------------------------------------------------------------------------------
# Evaluation and plots.


def batches_of(split: Split, size: int):
    for a in range(0, len(split.texts), size):
        yield a, split.src[a:a + size], split.lengths[a:a + size]


def decode_all(fn, params, split: Split, size: int) -> list[str]:
    """Runs a jitted decoder over a split in chunks (the last chunk padded to ``size``)."""
    out: list[str] = []
    for _, src, lengths in batches_of(split, size):
        n = src.shape[0]
        if n < size:
            src = np.concatenate([src, np.repeat(src[-1:], size - n, 0)])
            lengths = np.concatenate([lengths, np.repeat(lengths[-1:], size - n)])
        tokens = np.asarray(fn(params, jnp.asarray(src), jnp.asarray(lengths)))
        out.extend(decode_target(t) for t in tokens[:n])
    return out


def exact_match(predictions: list[str], split: Split) -> float:
    return float(np.mean([p == t for p, t in zip(predictions, split.isos, strict=True)]))


def teacher_forced_all(fn, params, split: Split, tgt_in: np.ndarray, size: int):
    """Runs a jitted ``teacher_forced`` over a split in chunks -> (logits, weights) as numpy."""
    logits, weights = [], []
    for a, src, lengths in batches_of(split, size):
        n = src.shape[0]
        tgt = tgt_in[a:a + size]
        if n < size:
            src, lengths, tgt = (np.concatenate([x, np.repeat(x[-1:], size - n, 0)])
                                 for x in (src, lengths, tgt))
        lg, w = fn(params, jnp.asarray(src), jnp.asarray(lengths), jnp.asarray(tgt))
        logits.append(np.asarray(lg)[:n])
        weights.append(np.asarray(w)[:n])
    return np.concatenate(logits), np.concatenate(weights)


def mean_nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean token cross entropy (nats) from logits [N, T, V] and targets [N, T]."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return float(nll[targets != TGT_PAD].mean())


def plot_attention(kind: str, split: Split, predictions, weights: np.ndarray, picks,
                   path: Path) -> None:
    """One attention matrix per picked example: rows output characters, columns input."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(picks), 4.2))
    FigureCanvasAgg(fig)
    for col, (i, w) in enumerate(zip(picks, weights, strict=True)):
        pred = predictions[i]
        rows = list(pred) + ["</s>"]
        length = int(split.lengths[i])
        ax = fig.add_subplot(1, len(picks), col + 1)
        ax.imshow(w[:len(rows), :length], cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(length), list(split.texts[i]), fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_title(f"{split.texts[i]!r}\n-> {pred}", fontsize=8)
    fig.suptitle(f"{kind} attention (rows: output, columns: input)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def predicted_inputs(predictions: list[str]) -> np.ndarray:
    """Decoder inputs BOS + prediction (padded with EOS), to replay the model's own output."""
    out = np.full((len(predictions), TGT_LEN), EOS, np.int32)
    out[:, 0] = BOS
    for r, pred in enumerate(predictions):
        ids = [TGT_INDEX.get(c, TGT_INDEX["0"]) for c in pred][:TGT_LEN - 1]
        out[r, 1:1 + len(ids)] = ids
    return out


# ---------------------------------------------------------------------------------------------
# Command line.

DEFAULTS = dict(train_size=20_000, valid_size=1000, test_size=2000, hidden_size=64,
                embed_size=32, attention_size=64, epochs=4, batch_size=64, lr=3e-3)
SMOKE = dict(train_size=768, valid_size=64, test_size=128, hidden_size=16, embed_size=8,
             attention_size=16, epochs=2, batch_size=64, lr=1e-2)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--attention", choices=["bahdanau", "luong"], default="bahdanau",
                   help="bahdanau: additive score on s_{i-1}; luong: dot score on s_i")
    p.add_argument("--out", type=Path, default=Path("runs/seq2seq_attention"))
    p.add_argument("--smoke", action="store_true",
                   help="tiny run, < 30 s on a CPU (also compiles at XLA optimisation level 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--seed", type=int, default=0, help="data and initialisation seed")
    for name, kind in (("train_size", int), ("valid_size", int), ("test_size", int),
                       ("hidden_size", int), ("embed_size", int), ("attention_size", int),
                       ("epochs", int), ("batch_size", int), ("lr", float)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=f"default {DEFAULTS[name]} ({SMOKE[name]} with --smoke)")
    p.add_argument("--beam-size", type=int, default=4, help="beam width for beam search")
    p.add_argument("--length-penalty", type=float, default=0.0,
                   help="alpha of Wu et al. (2016)'s length penalty (0: none)")
    p.add_argument("--clip-norm", type=float, default=1.0, help="gradient clipping norm")
    p.add_argument("--optimizer", default="adam", choices=sorted(train.OPTIMIZERS))
    p.add_argument("--translate", action="append", default=[], metavar="TEXT",
                   help="also translate this date string at the end (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    preset = SMOKE if args.smoke else DEFAULTS
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("train_size", "valid_size", "test_size", "hidden_size", "embed_size",
                 "attention_size", "epochs", "batch_size", "beam_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.batch_size > args.train_size:
        p.error(f"--batch-size {args.batch_size} is larger than --train-size {args.train_size}")
    if not args.lr > 0:
        p.error(f"--lr must be > 0; got {args.lr}")
    if args.length_penalty < 0:
        p.error(f"--length-penalty must be >= 0; got {args.length_penalty}")
    bad = sorted({c for t in args.translate for c in t if c not in SRC_INDEX})
    if bad:
        p.error(f"--translate: characters {bad} are not in the source alphabet {SOURCE_CHARS!r}")
    return args


def cheap_compiles() -> None:
    """For --smoke: compiling dominates a seconds-long run, and XLA's CPU backend compiles 2-3x
    faster at LLVM optimisation level 0. Only takes effect before JAX's first computation."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        cheap_compiles()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    train_ex = draw_dates(rng, args.train_size)
    train_texts = {t for t, _, _ in train_ex}
    held_out = draw_dates(rng, args.valid_size + args.test_size, exclude=train_texts)
    width = max(len(t) for t, _, _ in train_ex + held_out) + 4  # room for --translate inputs
    if args.translate:
        width = max(width, *(len(t) for t in args.translate))
    data = {"train": make_split(train_ex, width),
            "valid": make_split(held_out[:args.valid_size], width),
            "test": make_split(held_out[args.valid_size:], width)}
    model = Seq2Seq(args.hidden_size, args.embed_size, args.attention_size, args.attention)
    params = jax.jit(model.init)(jax.random.PRNGKey(args.seed))
    num_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    steps_per_epoch = args.train_size // args.batch_size
    optimizer = train.make_optimizer(args.optimizer, args.lr, clip_norm=args.clip_norm)

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config |= {"num_params": num_params, "source_width": width, "formats": FORMATS,
               "steps_per_epoch": steps_per_epoch, "jax_version": jax.__version__,
               "backend": jax.default_backend()}
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"dates -> ISO: {args.train_size} train / {args.valid_size} valid / {args.test_size} "
          f"test examples, {len(FORMATS)} formats, inputs up to {width} chars; {args.attention} "
          f"attention, {num_params:,} parameters, {steps_per_epoch} steps/epoch")
    for text, iso, _ in train_ex[:3]:
        print(f"  e.g. {text!r} -> {iso}")

    def loss_fn(params, carry, batch, key):
        nll_sum, count = model.loss(params, batch)
        return nll_sum / count, (carry, {})

    tr = data["train"]

    @functools.lru_cache(maxsize=2)
    def epoch_order(epoch: int) -> np.ndarray:
        return train.minibatches(args.train_size, args.batch_size, seed=args.seed, epoch=epoch)

    def get_batch(epoch: int, index: int):
        idx = epoch_order(epoch)[index]
        return tr.src[idx], tr.lengths[idx], tr.tgt_in[idx], tr.tgt_out[idx]

    eval_size = min(256, max(args.valid_size, args.test_size))
    teacher_forced = jax.jit(model.teacher_forced)
    greedy = jax.jit(model.greedy)
    beam = jax.jit(functools.partial(model.beam, beam_size=args.beam_size,
                                     length_penalty=args.length_penalty))

    def valid_metrics(state, epoch):
        split = data["valid"]
        logits, _ = teacher_forced_all(teacher_forced, state.params, split, split.tgt_in,
                                       eval_size)
        em = exact_match(decode_all(greedy, state.params, split, eval_size), split)
        return {"loss": mean_nll(logits, split.tgt_out), "exact_match_greedy": em}

    state = train.TrainState.create(params, optimizer, seed=args.seed)
    result = run_for_script(
        state=state,
        train_step=train.make_train_step(loss_fn, optimizer),
        get_batch=get_batch,
        steps_per_epoch=steps_per_epoch,
        num_epochs=args.epochs,
        out_dir=args.out,
        resume=args.resume,
        evaluate_fn=valid_metrics,
        log_every=max(1, min(100, steps_per_epoch // 4)),
        tokens_per_step=args.batch_size * TGT_LEN,
        progress=False if args.no_progress else None,
    )
    if isinstance(result, int):
        return result
    state, summary = result
    for record in summary["history"]:
        if record["split"] == "valid":
            print(f"  epoch {record['epoch']:.0f}: valid loss {record['loss']:.4f}, greedy exact "
                  f"match {record['exact_match_greedy']:.4f}")

    t0 = time.perf_counter()
    test = data["test"]
    by_greedy = decode_all(greedy, state.params, test, eval_size)
    by_beam = decode_all(beam, state.params, test, eval_size)
    eval_s = time.perf_counter() - t0
    em_greedy, em_beam = exact_match(by_greedy, test), exact_match(by_beam, test)
    per_format = {}
    for f, name in enumerate(FORMAT_NAMES):
        rows = np.flatnonzero(test.formats == f)
        if rows.size:
            per_format[name] = float(np.mean([by_beam[i] == test.isos[i] for i in rows]))
    errors = [{"input": test.texts[i], "target": test.isos[i], "beam": by_beam[i],
               "greedy": by_greedy[i]}
              for i in range(len(test.texts)) if by_beam[i] != test.isos[i]][:20]
    results = {
        "exact_match": em_beam,
        "exact_match_greedy": em_greedy,
        "exact_match_beam": em_beam,
        "target_exact_match": TARGET,
        "attention": args.attention,
        "beam_size": args.beam_size,
        "test_examples": len(test.texts),
        "per_format_exact_match": per_format,
        "errors": errors,
        "valid_loss": summary["last"].get("valid", {}).get("loss"),
        "num_params": num_params,
        "steps": int(state.step),
        "wall_s": summary["wall_s"],
        "decode_s": eval_s,
        "smoke": args.smoke,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    # held-out examples of different formats, replayed on the model's own beam output, so
    # each row is the attention the decoder used for that output character
    shown = ["A, B d, Y", "the o of B, Y", "m/d/Y", "dd.mm.Y"]
    order = [FORMAT_NAMES.index(n) for n in shown] + list(range(len(FORMAT_NAMES)))
    picks = [int(np.flatnonzero(test.formats == f)[0]) for f in dict.fromkeys(order)
             if np.any(test.formats == f)][:4]
    sub = make_split([(test.texts[i], test.isos[i], int(test.formats[i])) for i in picks], width)
    _, weights = teacher_forced_all(teacher_forced, state.params, sub,
                                    predicted_inputs([by_beam[i] for i in picks]), eval_size)
    plot_attention(args.attention, test, by_beam, weights, picks, args.out / "attention.png")
    try:
        train.plot_curves(args.out / "metrics.jsonl", args.out / "loss.png", key="loss")
    except ValueError as err:
        print(f"(no loss plot: {err})")
    if args.translate:
        outputs = decode_all(beam, state.params, make_split(
            [(t, "0000-00-00", 0) for t in args.translate], width), eval_size)
        for text, iso in zip(args.translate, outputs, strict=True):
            print(f"  {text!r} -> {iso}")
    for e in errors[:5]:
        print(f"  miss: {e['input']!r} -> {e['beam']} (want {e['target']})")
    print(f"test exact match: beam {em_beam:.4f}, greedy {em_greedy:.4f} on "
          f"{len(test.texts)} held-out dates   (target >= {TARGET})")
    return 0


if __name__ == "__main__":
    train.reexec_with_allocator_settings()  # reuse freed host memory: jaxrnn/train/host.py
    sys.exit(main())
