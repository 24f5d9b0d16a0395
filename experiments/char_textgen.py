#!/usr/bin/env python
"""Character-level LSTM language model and text sampler (temperature, top-k, top-p, prompt).

    python experiments/char_textgen.py --out runs/chars                    # default text
    python experiments/char_textgen.py --text pg100.txt --out runs/shakespeare
    python experiments/char_textgen.py --out runs/chars --resume --prompt "A class " \\
        --temperature 0.7 --top-p 0.9          # a finished run: no training, just samples
    python experiments/char_textgen.py --smoke --out runs/smoke            # < 30 s

Text: any UTF-8 file with ``--text FILE`` (a Project Gutenberg book is the classic choice).
The default must work offline, and no public-domain literary text ships with jaxrnn or any of
its dependencies (site-packages holds license texts, numeric data sets and a Lorem ipsum;
NLTK's Gutenberg corpus is not installed). So the default is the best real prose that does:
the Python Language Reference topics that ``help()`` shows, ``pydoc_data.topics`` in the
standard library of the running CPython (about 465,000 characters of English technical prose
with code examples, copyright the Python Software Foundation, PSF License v2; not public
domain). results.json names the source, the Python version and the text's SHA-256, since the
text differs between Python releases.

Split: the first 90% of the characters train, the next 5% validate, the last 5% test
(contiguous, no shuffling). The alphabet is the training split's characters plus one
``<unk>`` id for held-out characters the training text never used.

Model, as in the background articles' Keras char-RNN: character embedding -> 2-layer LSTM
(:class:`jaxrnn.StackedRNN`; forget-gate bias 1 as Keras's ``unit_forget_bias``;
``recurrent_dropout=0.2``: variational dropout on h_{t-1}, one mask per sequence, Gal &
Ghahramani 2016; ``dropout=0.2`` between the layers) -> softmax, with dropout 0.2 also on the
embedding output and before the softmax (:class:`jaxrnn.nn.language_model.LanguageModel`).
Truncated BPTT over the training text cut into ``--batch-size`` rows, the state carried from
window to window (:func:`jaxrnn.train.batchify` / ``get_window``), Adam on the mean
per-character cross entropy with gradient clipping, the lr multiplied by ``--lr-decay`` every
epoch after ``--decay-after``, trained by :func:`jaxrnn.train.run_training` (checkpoints,
``--resume``).

Evaluation: bits per character, ``nats / ln 2``, on the test split read as ``--eval-batch-size``
contiguous streams with the state carried through. Reference points on the same split:
a unigram model and the best add-alpha character n-gram (order <= 5 and alpha picked on the
validation split).

Sampling (:mod:`jaxrnn.decoding` over :meth:`LanguageModel.step`, one step of the whole
stack): the prompt is fed in one character at a time, then characters are drawn from
``softmax(logits / temperature)`` restricted to the ``--top-k`` most likely and/or the
smallest nucleus of probability ``--top-p`` (Holtzman et al., 2020). A sample is printed
after every epoch and written to samples.txt.

Outputs in --out: config.json, metrics.jsonl, bpc.png, samples.txt, results.json (test_bpc,
valid_bpc, baselines, text source, samples), checkpoints/. Exit codes: 2 for a bad --text or
--prompt, 3 for a non-finite loss.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import sampling, train
from jaxrnn.nn.language_model import LanguageModel
from jaxrnn.train.cli import run_for_script

UNK = "<unk>"
DEFAULT_SOURCE = ("Python Language Reference topics (pydoc_data.topics, CPython {version} "
                  "standard library; PSF License v2, not public domain)")

# Sized for about 5 minutes on a 2-core CPU. Many small updates beat few large ones at this
# budget (a 2-epoch pilot on 200k characters: batch 16 x bptt 32 reached valid bpc 2.07,
# batch 32 x bptt 64 2.88), and the step time hardly grows with the hidden size there.
DEFAULTS = dict(hidden_size=256, embed_size=64, num_layers=2, epochs=6, batch_size=16,
                bptt=32, lr=3e-3, lr_decay=0.5, decay_after=3, sample_length=400,
                max_chars=None)
SMOKE = dict(hidden_size=32, embed_size=16, num_layers=2, epochs=2, batch_size=16, bptt=32,
             lr=1e-2, lr_decay=0.5, decay_after=1, sample_length=80, max_chars=24_000)


def load_text(path: Path | None) -> tuple[str, str]:
    """Returns (text, source description)."""
    if path is None:
        import pydoc_data.topics

        topics = pydoc_data.topics.topics
        text = "\n\n".join(topics[name] for name in sorted(topics))
        return text, DEFAULT_SOURCE.format(version=sys.version.split()[0])
    return path.read_text(encoding="utf-8"), str(path)


def build_alphabet(train_text: str) -> list[str]:
    """``[<unk>] + sorted characters of the training text``; id 0 is <unk>."""
    return [UNK] + sorted(set(train_text))


def encode(text: str, index: dict[str, int]) -> np.ndarray:
    return np.fromiter((index.get(c, 0) for c in text), np.int32, len(text))


class NGram:
    """An add-alpha character n-gram model: counts of every n-gram and (n-1)-gram context.

    ``p(c | ctx) = (count(ctx c) + alpha) / (count(ctx) + alpha * vocab)``; order 1 is the
    unigram model.
    """

    def __init__(self, train_ids: np.ndarray, vocab: int, order: int):
        self.vocab, self.order, self.total = vocab, order, len(train_ids)
        codes = self.codes(train_ids)
        self.full, self.full_counts = np.unique(codes, return_counts=True)
        self.ctx, self.ctx_counts = np.unique(codes // vocab, return_counts=True)

    def codes(self, ids: np.ndarray) -> np.ndarray:
        n = len(ids) - self.order + 1
        out = np.zeros(n, np.int64)
        for j in range(self.order):
            out = out * self.vocab + ids[j:j + n].astype(np.int64)
        return out

    @staticmethod
    def _lookup(table, counts, keys):
        pos = np.clip(np.searchsorted(table, keys), 0, len(table) - 1)
        return np.where(table[pos] == keys, counts[pos], 0)

    def bpc(self, eval_ids: np.ndarray, alpha: float) -> float:
        """Bits per character on eval_ids (its first order-1 characters are not scored)."""
        keys = self.codes(eval_ids)
        if self.order == 1:
            ctx_total = np.full(keys.shape, self.total)
        else:
            ctx_total = self._lookup(self.ctx, self.ctx_counts, keys // self.vocab)
        hits = self._lookup(self.full, self.full_counts, keys)
        return float(-np.mean(np.log2((hits + alpha) / (ctx_total + alpha * self.vocab))))


def ngram_baselines(train_ids, valid_ids, test_ids, vocab: int) -> dict[str, float]:
    """Unigram (add-one) and the best add-alpha n-gram (order and alpha picked on valid)."""
    best = None
    for order in range(2, 6):
        model = NGram(train_ids, vocab, order)
        for alpha in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
            bpc = model.bpc(valid_ids, alpha)
            if best is None or bpc < best[0]:
                best = (bpc, model, alpha)
    _, model, alpha = best
    return {"unigram_bpc": NGram(train_ids, vocab, 1).bpc(test_ids, 1.0),
            "ngram_bpc": model.bpc(test_ids, alpha), "ngram_order": model.order,
            "ngram_alpha": alpha}


def make_evaluator(model: LanguageModel, ids: np.ndarray, batch_size: int, bptt: int):
    """Bits per character over a whole split, the state carried from window to window."""
    mean_nll = jaxrnn.nn.stream_evaluator(model, ids, batch_size, bptt)

    def evaluate(params) -> dict[str, float]:
        nats = mean_nll(params)
        return {"loss": nats, "bpc": nats / math.log(2)}

    return evaluate


def make_sampler(model: LanguageModel, length: int, temperature: float, top_k, top_p):
    """A jitted ``(params, prompt int [1, P], key) -> int [length]``."""

    @jax.jit
    def sample(params, prompt, key):
        state = model.initial_state(params, prompt.shape[0])
        tokens, _ = sampling.generate(functools.partial(model.step, params), state, prompt,
                                      length, key, temperature=temperature, top_k=top_k,
                                      top_p=top_p)
        return tokens[0]

    return sample


def cheap_compiles() -> None:
    """For --smoke: compiling dominates a seconds-long run, and XLA's CPU backend compiles 2-3x
    faster at LLVM optimisation level 0. Only takes effect before JAX's first computation."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--text", type=Path, default=None,
                   help="UTF-8 text file to train on (default: the Python Language Reference "
                        "shipped with CPython, see below)")
    p.add_argument("--out", type=Path, default=Path("runs/char_textgen"), help="output folder")
    p.add_argument("--smoke", action="store_true",
                   help="tiny model on the first 24,000 characters, < 30 s on a CPU (also "
                        "compiles at XLA optimisation level 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-chars", type=int, default=None,
                   help="use only the first N characters of the text")
    for name, kind, what in (("hidden_size", int, "LSTM size"),
                             ("embed_size", int, "character embedding size"),
                             ("num_layers", int, "stacked LSTM layers"),
                             ("epochs", int, "passes over the training split"),
                             ("batch_size", int, "parallel streams"),
                             ("bptt", int, "characters per truncated-BPTT window"),
                             ("lr", float, "Adam learning rate"),
                             ("lr_decay", float, "lr multiplier per epoch after --decay-after"),
                             ("decay_after", int, "epochs at the full learning rate"),
                             ("sample_length", int, "characters per sample")):
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=f"{what} (default {DEFAULTS[name]}; {SMOKE[name]} with --smoke)")
    p.add_argument("--dropout", type=float, default=0.2,
                   help="dropout on the embedding output, between layers, before the softmax")
    p.add_argument("--recurrent-dropout", type=float, default=0.2,
                   help="variational dropout on h_{t-1} inside the LSTM")
    p.add_argument("--forget-bias", type=float, default=1.0,
                   help="offset on the LSTM forget gate (1: Keras's unit_forget_bias, as the "
                        "articles; Jozefowicz et al., 2015; 0: PyTorch)")
    p.add_argument("--clip-norm", type=float, default=5.0, help="gradient clipping norm")
    p.add_argument("--eval-batch-size", type=int, default=16,
                   help="contiguous streams for validation/test bits per character")
    p.add_argument("--prompt", default="The ", help="text the samples continue")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature (0: greedy, the argmax at every step)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    p.add_argument("--top-p", type=float, default=None,
                   help="sample within the smallest set of probability >= p (nucleus)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv=None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    p = build_parser()
    args = p.parse_args(argv)
    preset = SMOKE if args.smoke else DEFAULTS
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("hidden_size", "embed_size", "num_layers", "epochs", "batch_size", "bptt",
                 "sample_length", "eval_batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.max_chars is not None and args.max_chars < 1000:
        p.error(f"--max-chars must be >= 1000; got {args.max_chars}")
    for name in ("dropout", "recurrent_dropout"):
        if not 0.0 <= getattr(args, name) < 1.0:
            p.error(f"--{name.replace('_', '-')} must lie in [0, 1); got {getattr(args, name)}")
    if not args.lr > 0:
        p.error(f"--lr must be > 0; got {args.lr}")
    if not 0.0 < args.lr_decay <= 1.0:
        p.error(f"--lr-decay must lie in (0, 1]; got {args.lr_decay}")
    if args.decay_after < 0:
        p.error(f"--decay-after must be >= 0; got {args.decay_after}")
    if args.temperature < 0:
        p.error(f"--temperature must be >= 0; got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        p.error(f"--top-k must be >= 1; got {args.top_k}")
    if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
        p.error(f"--top-p must lie in (0, 1]; got {args.top_p}")
    if not args.prompt:
        p.error("--prompt must not be empty (the first character conditions the sample)")
    if args.text is not None and not args.text.is_file():
        p.error(f"--text {args.text}: no such file")
    return args, p


def main(argv=None) -> int:
    args, parser = parse_args(argv)
    if args.smoke:
        cheap_compiles()
    try:
        text, source = load_text(args.text)
    except (OSError, UnicodeDecodeError) as err:
        print(f"error: --text {args.text}: cannot read it as UTF-8 text: {err}", file=sys.stderr)
        return 2
    full_chars = len(text)
    if args.max_chars is not None:
        text = text[:args.max_chars]
    n = len(text)
    cut_valid, cut_test = int(0.9 * n), int(0.95 * n)
    splits = {"train": text[:cut_valid], "valid": text[cut_valid:cut_test],
              "test": text[cut_test:]}
    need = max(args.batch_size * (args.bptt + 1), args.eval_batch_size * 2)
    if len(splits["train"]) < need or len(splits["test"]) < 2 * args.eval_batch_size:
        print(f"error: --text has {n} characters; a 90/5/5 split needs at least "
              f"{need} training characters for --batch-size {args.batch_size} and --bptt "
              f"{args.bptt}", file=sys.stderr)
        return 2
    alphabet = build_alphabet(splits["train"])
    index = {c: i for i, c in enumerate(alphabet)}
    unknown = sorted(set(args.prompt) - set(alphabet[1:]))
    if unknown:
        parser.error(f"--prompt has characters {unknown} that never occur in the training text")
    ids = {name: encode(s, index) for name, s in splits.items()}
    vocab = len(alphabet)
    unk_held_out = int(sum(np.sum(ids[s] == 0) for s in ("valid", "test")))

    args.out.mkdir(parents=True, exist_ok=True)
    cell = jaxrnn.LSTM(args.hidden_size, forget_bias=args.forget_bias)
    rnn = jaxrnn.StackedRNN(cell, num_layers=args.num_layers,
                            dropout=args.dropout, recurrent_dropout=args.recurrent_dropout)
    model = LanguageModel(vocab, rnn, embed_size=args.embed_size, dropout=args.dropout)
    params = jax.jit(model.init)(jax.random.PRNGKey(args.seed))
    num_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    stream = train.batchify(ids["train"], args.batch_size)
    steps_per_epoch = train.num_windows(stream, args.bptt)
    schedule = train.epoch_decay(args.lr, args.lr_decay, args.decay_after, steps_per_epoch)
    optimizer = train.make_optimizer("adam", schedule, clip_norm=args.clip_norm)
    text_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config |= {"source": source, "text_sha256": text_sha256, "chars": n, "vocab_size": vocab,
               "num_params": num_params, "steps_per_epoch": steps_per_epoch,
               "jax_version": jax.__version__, "backend": jax.default_backend()}
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"text: {source}\n  {n:,} characters (of {full_chars:,}), alphabet {vocab} "
          f"(with {UNK}; {unk_held_out} held-out characters unseen in training); "
          f"{num_params:,} parameters, {steps_per_epoch} steps/epoch, {args.epochs} epochs")

    baselines = ngram_baselines(ids["train"], ids["valid"], ids["test"], vocab)
    print(f"  test bpc of baselines: unigram {baselines['unigram_bpc']:.3f}, "
          f"{baselines['ngram_order']}-gram (add-{baselines['ngram_alpha']}) "
          f"{baselines['ngram_bpc']:.3f}")

    tokens_per_step = args.batch_size * args.bptt

    def loss_fn(params, carry, batch, key):
        x, y = batch
        _, (carry, nll_sum) = model.loss(params, x, y, carry, key=key, train=True)
        loss = nll_sum / tokens_per_step
        return loss, (carry, {"bpc": loss / math.log(2)})

    validate = make_evaluator(model, ids["valid"], args.eval_batch_size, args.bptt)
    sample = make_sampler(model, args.sample_length, args.temperature, args.top_k, args.top_p)
    prompt = jnp.asarray(encode(args.prompt, index)[None, :])
    setting = (f"temperature {args.temperature}, top-k {args.top_k}, top-p {args.top_p}, "
               f"prompt {args.prompt!r}")
    samples_file = args.out / "samples.txt"

    def decode(tokens) -> str:
        return "".join(alphabet[i] if i else "?" for i in np.asarray(tokens).tolist())

    def write_sample(title: str, body: str) -> None:
        with samples_file.open("a", encoding="utf-8") as f:
            f.write(f"=== {title} ===\n{body}\n\n")

    def valid_and_sample(state, epoch):
        metrics = validate(state.params)
        body = args.prompt + decode(sample(state.params, prompt,
                                           jax.random.PRNGKey(args.seed + 1 + epoch)))
        print(f"--- sample after epoch {epoch + 1} (valid bpc {metrics['bpc']:.3f}; {setting}):"
              f"\n{body}\n---")
        write_sample(f"epoch {epoch + 1}, {setting}", body)
        return metrics

    zeros = model.initial_state(params, args.batch_size)
    state = train.TrainState.create(params, optimizer, seed=args.seed, carry=zeros)
    result = run_for_script(
        state=state,
        train_step=train.make_train_step(loss_fn, optimizer),
        get_batch=lambda epoch, index: train.get_window(stream, index, args.bptt),
        steps_per_epoch=steps_per_epoch,
        num_epochs=args.epochs,
        out_dir=args.out,
        resume=args.resume,
        on_epoch_start=lambda s, epoch: s._replace(
            carry=model.initial_state(s.params, args.batch_size)),
        evaluate_fn=valid_and_sample,
        log_every=max(1, min(100, steps_per_epoch // 5)),
        tokens_per_step=tokens_per_step,
        extra_metrics=train.lr_metric(schedule),
        progress=False if args.no_progress else None,
    )
    if isinstance(result, int):
        return result
    state, summary = result

    t0 = time.perf_counter()
    valid = validate(state.params)
    test = make_evaluator(model, ids["test"], args.eval_batch_size, args.bptt)(state.params)
    eval_s = time.perf_counter() - t0
    final = {setting: args.prompt + decode(sample(state.params, prompt,
                                                  jax.random.PRNGKey(args.seed)))}
    if not args.smoke:  # a short temperature sweep (one compilation each)
        for temperature in (0.5, 1.0):
            if temperature != args.temperature:
                sweep = make_sampler(model, args.sample_length, temperature, args.top_k,
                                     args.top_p)
                key = (f"temperature {temperature}, top-k {args.top_k}, top-p {args.top_p}, "
                       f"prompt {args.prompt!r}")
                final[key] = args.prompt + decode(sweep(state.params, prompt,
                                                        jax.random.PRNGKey(args.seed)))
    for title, body in final.items():
        print(f"--- final sample ({title}):\n{body}\n---")
        write_sample(f"final, {title}", body)
    train_bpc = summary["last"].get("train_epoch", {}).get("bpc")
    results = {
        "test_bpc": test["bpc"],
        "valid_bpc": valid["bpc"],
        "train_bpc": train_bpc,
        **{f"baseline_{k}": v for k, v in baselines.items()},
        "source": source,
        "text_sha256": text_sha256,
        "chars": n,
        "split_chars": {k: len(v) for k, v in splits.items()},
        "vocab_size": vocab,
        "held_out_unknown_chars": unk_held_out,
        "num_params": num_params,
        "steps": int(state.step),
        "epochs": int(state.step) / steps_per_epoch,
        "wall_s": summary["wall_s"],
        "tokens_per_sec": summary["tokens_per_sec"],
        "final_eval_s": eval_s,
        "samples": final,
        "smoke": args.smoke,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    try:
        train.plot_curves(args.out / "metrics.jsonl", args.out / "bpc.png", key="bpc",
                          title="bits per character")
    except ValueError as err:  # e.g. a resumed run with nothing new to plot
        print(f"(no plot: {err})")
    print(f"test bpc {test['bpc']:.3f}   (valid {valid['bpc']:.3f}; baselines on the same "
          f"split: unigram {baselines['unigram_bpc']:.3f}, {baselines['ngram_order']}-gram "
          f"{baselines['ngram_bpc']:.3f}; lower is better)")
    return 0


if __name__ == "__main__":
    train.reexec_with_allocator_settings()  # reuse freed host memory: jaxrnn/train/host.py
    sys.exit(main())
