#!/usr/bin/env python
"""Sentiment classification of IMDB movie reviews: embedding + bidirectional LSTM.

    python experiments/sentiment.py --out runs/imdb                  # target >= 87% test accuracy
    python experiments/sentiment.py --data-dir ~/data --out runs/imdb   # a local aclImdb copy
    python experiments/sentiment.py --smoke --out runs/sentiment_smoke  # generated data, seconds

Data (jaxrnn.data.imdb): Maas et al. (2011)'s 25,000 training and 25,000 test reviews, from
aclImdb_v1.tar.gz (84 MB; md5 7c2ac02c03563afcf9b574c7e56c153a), downloaded once into the
cache ($JAXRNN_DATA or ~/.cache/jaxrnn), or taken from --data-dir (holding the archive or the
extracted aclImdb/ folder). The vocabulary (--max-vocab words, <pad> = 0, <unk> = 1) is built
from the training split only; reviews are cut to their last --max-len words. --dataset
synthetic (and --smoke) uses generated reviews whose label is the majority of a few sentiment
words hidden among filler words: no download.

Model: embedding -> dropout -> bidirectional LSTM -> pooling over the valid steps -> dropout ->
linear -> 2 classes. Padding is never run through the LSTM: every batch carries each review's
length, and the lengths-aware scan (jaxrnn.scan) leaves the carry untouched and the outputs zero
past it; the backward direction starts at each review's last word, not at the padding.
Pooling (--pool): max (default; Conneau et al. 2017) or mean over the valid steps, or last: the
forward output at the last word joined with the backward output at the first.

Batches: reviews of similar length are batched together (shuffled pools of 50 batches sorted
by length, deterministic in --seed and the epoch) and each batch is cut to its longest review
rounded up to --pad-multiple, so little time goes to padding and few shapes are compiled.
10% of the training reviews are held out for validation after each epoch; the test split is
evaluated once, at the end.

Outputs in --out: config.json, metrics.jsonl, accuracy.png and loss.png (learning curves),
accuracy_by_length.png (test accuracy by review length), results.json (test_accuracy as a
fraction, valid_accuracy, target, ...), checkpoints/. Exit codes: 2 for bad arguments or
missing data (no internet and no --data-dir), 3 for a non-finite loss.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import harness
import jaxrnn
from harness import positive_float, positive_int, rate
from jaxrnn import train
from jaxrnn.data import DataError
from jaxrnn.data.imdb import IMDB_URL, load_imdb, make_text_classification, synthetic_reviews

TARGET = 0.87  # test accuracy on IMDB
PRESETS: dict[str, dict] = {
    "imdb": dict(max_vocab=20_000, max_len=400, embed_size=128, hidden_size=128, epochs=4,
                 batch_size=64, lr=2e-3, dropout=0.4, pad_multiple=50),
    "synthetic": dict(max_vocab=400, max_len=64, embed_size=32, hidden_size=32, epochs=4,
                      batch_size=32, lr=5e-3, dropout=0.1, pad_multiple=16),
    "smoke": dict(max_vocab=400, max_len=64, embed_size=16, hidden_size=16, epochs=2,
                  batch_size=32, lr=1e-2, dropout=0.1, pad_multiple=64),
}
HYPERPARAMETERS = {
    "max_vocab": (positive_int, "vocabulary size, <pad>/<unk> included"),
    "max_len": (positive_int, "keep at most this many (last) words"),
    "embed_size": (positive_int, "word embedding size"),
    "hidden_size": (positive_int, "LSTM size per direction"),
    "epochs": (positive_int, "passes over the training reviews"),
    "batch_size": (positive_int, "reviews per update"),
    "lr": (positive_float, "peak AdamW learning rate (cosine decay)"),
    "dropout": (rate, "on the embeddings and before the classifier"),
    "pad_multiple": (positive_int, "batches are padded to a multiple of this many steps"),
}
SYNTHETIC_SIZES = {"synthetic": (4000, 2000), "smoke": (1200, 400)}
NUM_CLASSES = 2


def parse_args(argv=None):
    p = harness.parser(__file__, __doc__, smoke="generated data, tiny model, 2 epochs: seconds")
    p.add_argument("--dataset", choices=["imdb", "synthetic"], default=None,
                   help="imdb (default; downloaded) or generated reviews (default with --smoke)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding aclImdb_v1.tar.gz or the extracted aclImdb/ folder")
    p.add_argument("--url", default=IMDB_URL, help="where to download aclImdb_v1.tar.gz from")
    p.add_argument("--truncate", choices=["tail", "head"], default="tail",
                   help="keep the end (tail) or the beginning (head) of long reviews")
    p.add_argument("--num-layers", type=positive_int, default=1,
                   help="stacked bidirectional layers")
    p.add_argument("--pool", choices=["max", "mean", "last"], default="max",
                   help="pooling of the outputs over the valid steps")
    p.add_argument("--recurrent-dropout", type=rate, default=0.0,
                   help="variational dropout on h_{t-1} (Gal & Ghahramani 2016)")
    p.add_argument("--weight-decay", type=float, default=1e-4,
                   help="decoupled weight decay (AdamW)")
    p.add_argument("--clip-norm", type=positive_float, default=5.0,
                   help="gradient clipping at this global norm")
    p.add_argument("--eval-batch-size", type=positive_int, default=250,
                   help="reviews per evaluation batch")
    harness.preset_flags(p, PRESETS, HYPERPARAMETERS)
    args = harness.parse(p, argv)
    if args.smoke and args.dataset == "imdb":
        p.error("--smoke runs on generated data (--dataset synthetic); drop --dataset imdb")
    if args.dataset is None:
        args.dataset = "synthetic" if args.smoke else "imdb"
    harness.fill_presets(args, PRESETS["smoke" if args.smoke else args.dataset],
                         HYPERPARAMETERS)
    if args.max_vocab < 3:
        p.error(f"--max-vocab must be >= 3 (<pad>, <unk> and one word); got {args.max_vocab}")
    return args


def load_data(args):
    if args.dataset == "synthetic":
        num_train, num_test = SYNTHETIC_SIZES["smoke" if args.smoke else "synthetic"]
        train_reviews, test_reviews = synthetic_reviews(num_train, num_test, seed=1234,
                                                        max_words=args.max_len)
        return make_text_classification(train_reviews, test_reviews, max_vocab=args.max_vocab,
                                         max_len=args.max_len, truncate=args.truncate)
    return load_imdb(max_vocab=args.max_vocab, max_len=args.max_len, truncate=args.truncate,
                     data_dir=args.data_dir, url=args.url, progress=not args.no_progress)


def build_model(args, vocab_size: int):
    cell = jaxrnn.LSTM(args.hidden_size, forget_bias=1.0)
    rnn = jaxrnn.StackedRNN(cell, num_layers=args.num_layers, bidirectional=True,
                            dropout=args.dropout, recurrent_dropout=args.recurrent_dropout)
    hidden = args.hidden_size

    def init(key):
        k_embed, k_rnn, k_head = jax.random.split(key, 3)
        return {
            "embed": 0.1 * jax.random.normal(k_embed, (vocab_size, args.embed_size), jnp.float32),
            "rnn": rnn.init(k_rnn, args.embed_size),
            "head": harness.dense_init(k_head, rnn.output_size, NUM_CLASSES),
        }

    def apply(params, ids, lengths, key=None, train=False):
        """ids [B, T] int32, lengths [B] int32 -> logits [B, 2]."""
        keys = jax.random.split(key, 3) if train else (None, None, None)
        x = params["embed"][ids]
        if train:
            x = jaxrnn.dropout(keys[0], args.dropout, x)
        ys, _ = rnn.apply(params["rnn"], x, lengths=lengths, key=keys[1], train=train)
        valid = (jnp.arange(ids.shape[1])[None, :] < lengths[:, None])[:, :, None]  # [B, T, 1]
        if args.pool == "max":
            pooled = jnp.max(jnp.where(valid, ys, -jnp.inf), axis=1)
        elif args.pool == "mean":
            pooled = jnp.sum(ys, axis=1) / lengths[:, None].astype(ys.dtype)
        else:  # forward output at the last word, backward output at the first
            last = jnp.take_along_axis(ys, (lengths - 1)[:, None, None], axis=1)[:, 0]
            pooled = jnp.concatenate([last[:, :hidden], ys[:, 0, hidden:]], axis=-1)
        if train:
            pooled = jaxrnn.dropout(keys[2], args.dropout, pooled[:, None])[:, 0]
        return harness.dense(params["head"], pooled)

    return init, apply


def padded_width(lengths: np.ndarray, multiple: int, max_len: int) -> int:
    return min(-(-int(lengths.max()) // multiple) * multiple, max_len)


def length_sorted_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int,
                          pool: int = 50) -> np.ndarray:
    """[num_batches, batch_size] indices: shuffled, then sorted by length within pools of
    ``pool`` batches, then the batch order shuffled; deterministic in (seed, epoch)."""
    order = train.minibatches(lengths.shape[0], batch_size, seed=seed, epoch=epoch).reshape(-1)
    chunk = batch_size * pool
    for start in range(0, order.size, chunk):
        part = order[start:start + chunk]
        order[start:start + chunk] = part[np.argsort(lengths[part], kind="stable")]
    batches = order.reshape(-1, batch_size)
    return batches[np.random.default_rng([seed, epoch, 1]).permutation(batches.shape[0])]


def eval_batches(ids, lengths, labels, batch_size: int, multiple: int):
    """Length-sorted batches of exactly ``batch_size`` rows (the last padded with weight-0
    copies), each cut to its longest review rounded up to ``multiple`` steps."""
    n = ids.shape[0]
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, n, batch_size):
        rows = order[np.minimum(np.arange(start, start + batch_size), n - 1)]
        weight = (np.arange(start, start + batch_size) < n).astype(np.float32)
        width = padded_width(lengths[rows], multiple, ids.shape[1])
        batches.append((ids[rows, :width], lengths[rows], labels[rows], weight))
    return batches


def score(logits_fn, params, batches) -> dict[str, np.ndarray | float]:
    """Loss and accuracy over the weighted examples, and each example's length and correctness."""
    nll, correct, lengths = [], [], []
    for ids, lens, labels, weight in batches:
        logits = np.asarray(logits_fn(params, ids, lens), np.float64)
        keep = weight > 0
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        nll.append(-log_probs[np.arange(labels.size), labels][keep])
        correct.append((logits.argmax(-1) == labels)[keep])
        lengths.append(lens[keep])
    correct = np.concatenate(correct)
    return {"loss": float(np.concatenate(nll).mean()), "accuracy": float(correct.mean()),
            "correct": correct, "lengths": np.concatenate(lengths)}


def plot_by_length(path: Path, lengths: np.ndarray, correct: np.ndarray, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, 9)).round().astype(int))
    bins = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, len(edges) - 2)
    centres, accuracy = [], []
    for b in range(len(edges) - 1):
        if np.any(bins == b):
            centres.append(f"{edges[b]}-{edges[b + 1]}")
            accuracy.append(correct[bins == b].mean())
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(range(len(centres)), accuracy, color="C0")
    ax.set_xticks(range(len(centres)), centres, rotation=30)
    ax.set_ylim(min(accuracy) - 0.05, 1.0)
    ax.set_xlabel("review length (words, after truncation)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    args = parse_args(argv)
    with harness.start(args) as run:
        return experiment(args, run)


def experiment(args, run) -> int:
    try:
        data = load_data(args)
    except DataError as err:
        print(f"error: {err}\n\nThe IMDB reviews could not be loaded. Run once with an internet "
              f"connection (the archive is then cached), or download {args.url} (md5 "
              "7c2ac02c03563afcf9b574c7e56c153a) yourself and pass --data-dir FOLDER (holding "
              "aclImdb_v1.tar.gz or the extracted aclImdb/); --smoke or --dataset synthetic "
              "runs on generated reviews without any download.", file=sys.stderr)
        return 2
    vocab_size = len(data.vocab)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(data.train_ids.shape[0])
    n_valid = data.train_ids.shape[0] // 10
    fit, held = order[n_valid:], order[:n_valid]
    fit_ids, fit_lengths, fit_labels = (data.train_ids[fit], data.train_lengths[fit],
                                        data.train_labels[fit])
    if fit_ids.shape[0] < args.batch_size:
        print(f"error: --batch-size {args.batch_size} exceeds the {fit_ids.shape[0]} training "
              "reviews", file=sys.stderr)
        return 2
    steps_per_epoch = fit_ids.shape[0] // args.batch_size
    schedule = optax.cosine_decay_schedule(args.lr, steps_per_epoch * args.epochs, alpha=0.02)
    optimizer = train.make_optimizer("adamw", schedule, clip_norm=args.clip_norm,
                                     weight_decay=args.weight_decay)

    run.write_config({"vocab_size": vocab_size, "steps_per_epoch": steps_per_epoch,
                      "train_reviews": fit.size, "valid_reviews": held.size,
                      "test_reviews": data.test_ids.shape[0]})
    unk = float(np.mean(data.test_ids[data.test_ids > 0] == 1))
    print(f"{args.dataset}: {fit.size}/{held.size}/{data.test_ids.shape[0]} train/valid/test "
          f"reviews, vocabulary {vocab_size} (from the training split; {unk:.1%} of test words "
          f"unknown), median length {int(np.median(data.train_lengths))} words, BiLSTM "
          f"{args.num_layers}x{args.hidden_size}, {steps_per_epoch} steps/epoch, "
          f"{args.epochs} epochs")

    init, apply = build_model(args, vocab_size)

    def loss_fn(params, carry, batch, key):
        ids, lengths, labels = batch
        logits = apply(params, ids, lengths, key, train=True)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        accuracy = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
        return loss, (carry, {"accuracy": accuracy})

    logits_fn = jax.jit(apply)  # evaluation: no dropout, one compilation per batch width
    valid_batches = eval_batches(data.train_ids[held], data.train_lengths[held],
                                 data.train_labels[held], args.eval_batch_size, args.pad_multiple)

    def validate(state, epoch):
        scores = score(logits_fn, state.params, valid_batches)
        metrics = {"loss": scores["loss"], "accuracy": scores["accuracy"]}
        print(f"epoch {epoch + 1}/{args.epochs}: valid accuracy {metrics['accuracy']:.4f}, "
              f"loss {metrics['loss']:.4f}", flush=True)
        return metrics

    @functools.lru_cache(maxsize=2)
    def epoch_order(epoch):
        return length_sorted_batches(fit_lengths, args.batch_size, args.seed, epoch)

    def get_batch(epoch, index):
        rows = epoch_order(epoch)[index]
        width = padded_width(fit_lengths[rows], args.pad_multiple, args.max_len)
        return fit_ids[rows, :width], fit_lengths[rows], fit_labels[rows]

    state = train.TrainState.create(jax.jit(init)(jax.random.PRNGKey(args.seed)), optimizer,
                                    seed=args.seed)
    result = harness.fit(
        run, state=state, train_step=train.make_train_step(loss_fn, optimizer),
        get_batch=get_batch, steps_per_epoch=steps_per_epoch, num_epochs=args.epochs,
        evaluate_fn=validate, ckpt_every=500, log_every=max(min(steps_per_epoch // 4, 100), 1),
        extra_metrics=train.lr_metric(schedule), verbose=False,
    )
    if isinstance(result, int):
        return result
    state, summary = result

    t0 = time.perf_counter()
    test = score(logits_fn, state.params, eval_batches(
        data.test_ids, data.test_lengths, data.test_labels, args.eval_batch_size,
        args.pad_multiple))
    valid = summary["last"].get("valid", {})
    target = TARGET if args.dataset == "imdb" else None
    run.write_results({
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "valid_accuracy": valid.get("accuracy"),
        "train_accuracy": summary["last"].get("train_epoch", {}).get("accuracy"),
        "target": target,
        "dataset": args.dataset,
        "vocab_size": vocab_size,
        "pool": args.pool,
        "epochs": int(state.step) / steps_per_epoch,
        "steps": int(state.step),
        "wall_s": summary.get("wall_s"),
        "final_eval_s": time.perf_counter() - t0,
        "smoke": args.smoke,
    })
    plot_by_length(run.out / "accuracy_by_length.png", test["lengths"],
                   test["correct"].astype(np.float64),
                   f"{args.dataset}: test accuracy {test['accuracy']:.4f} by review length")
    for key in ("accuracy", "loss"):
        harness.plot_curves(run, f"{key}.png", key=key, splits=("train", "valid"),
                            title=f"{args.dataset}: {key}")
    shown = f"   (target on IMDB: >= {TARGET})" if target is not None else (
        "   (generated data; the IMDB target is >= 0.87)")
    print(f"test accuracy {test['accuracy']:.4f} on {data.test_ids.shape[0]} reviews{shown}")
    return 0


if __name__ == "__main__":
    harness.main(main)
