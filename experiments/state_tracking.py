"""State tracking with length generalisation: parity, modular arithmetic and the S3 word problem.

    python experiments/state_tracking.py --task parity --variants np,slstm,mamba,mamba_neg --seeds 3

The protocol of xLSTM (Beck et al. 2024) and Grazzi et al. 2025 ("Unlocking State-Tracking in
Linear RNNs Through Negative Eigenvalues"), after Deletang et al. 2023 ("Neural Networks and the
Chomsky Hierarchy"): train on words of lengths 3-40, test on longer words, in the buckets of
lengths 41-64, 65-128 and 129-256 (named "40-64", "64-128", "128-256"). Tasks (``--task``,
comma-separated):

- ``parity``: a bit string; is the number of ones odd? (the group Z_2; chance 0.5)
- ``modular_arithmetic``: digits 0-4; their sum modulo 5, no brackets (Z_5; chance 0.2)
- ``s3``: permutations of 3 elements; their composition (the word problem of S_3, non-abelian;
  chance 1/6). A diagonal linear recurrence commutes, so it is expected near chance.

Every step of a word carries the answer for the prefix up to it (its own word), so one training
sequence of 40 tokens trains the lengths 3-40 at once (loss from step 3 on), and one test
sequence of 256 tokens tests every length 1-256 (Merrill et al. 2024 supervise the same way; a
causal model's output at step t depends on the first t tokens only). The model: embedding ->
one cell -> two-layer head (``token_tasks``); Adam with a cosine schedule, the seeds of a cell
vmapped in one program, the same data for every cell.

Expected (from the papers): LSTM and sLSTM solve parity at every length; the input-dependent
linear recurrences whose transitions are in [0, 1] (Mamba, RG-LRU, minGRU, DeltaNet) stay near
chance past the training lengths; their negative-eigenvalue versions (``*_neg``: transitions in
(-1, 1)) solve it. The step budget (``--steps``) is the one with which the LSTM (``np``) reaches
0.95 at 128-256 on parity; every cell trains with the same budget.

Output in ``--out``: ``results.json`` (one object per task, a list for several:
``{"task", "chance", "buckets", "results": {variant: {"accuracy": {bucket: mean over seeds},
"per_seed": {bucket: [...]}, "wall_s", ...}}}``), ``results.md`` (cells x tasks, mean +- std
over seeds), ``heatmap.png`` and ``accuracy_vs_length.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

import harness
import token_tasks as tt

TRAIN_LENGTHS = (3, 40)
BUCKETS = ((40, 64), (64, 128), (128, 256))  # (lo, hi]: lengths lo+1 .. hi
BUCKET_NAMES = [f"{lo}-{hi}" for lo, hi in BUCKETS]
DEFAULT_VARIANTS = "np,slstm,mamba,mamba_neg,deltanet,deltanet_neg,rglru,rglru_neg"
SMOKE_VARIANTS = "np,mamba_neg"


def build_parser():
    p = harness.parser(__file__, __doc__, fast_smoke_compiles=True,
                       smoke="seconds-long check: 2 seeds, 30 steps, hidden 8, short test words")
    p.add_argument("--task", default="parity",
                   help=f"comma-separated tasks among {', '.join(tt.STATE_TRACKING)}")
    p.add_argument("--variants", default=None,
                   help="comma-separated jaxrnn.variants names (np is the plain LSTM) or "
                        "module:attr naming a cell class or factory (default: "
                        f"{DEFAULT_VARIANTS}; with --smoke: {SMOKE_VARIANTS})")
    p.add_argument("--seeds", type=harness.positive_int, default=3,
                   help="seeds per cell, vmapped (seeds --seed .. --seed + N - 1)")
    p.add_argument("--steps", type=harness.positive_int, default=1000,
                   help="training steps for every cell")
    p.add_argument("--batch-size", type=harness.positive_int, default=64,
                   help="training words per step and seed")
    p.add_argument("--hidden", type=harness.positive_int, default=32,
                   help="hidden size of every cell")
    p.add_argument("--embed-size", type=harness.positive_int, default=32,
                   help="token embedding width (the cell's input size)")
    p.add_argument("--lr", type=harness.positive_float, default=3e-3,
                   help="peak Adam learning rate (cosine decay to lr/10)")
    p.add_argument("--test-words", type=harness.positive_int, default=512,
                   help="test words of 256 tokens (each tests every length 1-256)")
    p.add_argument("--token-shift", action=argparse.BooleanOptionalAction, default=False,
                   help="feed the cell [e_t, e_(t-1)], the token and the one before it")
    p.add_argument("--parallel", action="store_true",
                   help="train linear recurrences through jaxrnn.associative_scan and cells with "
                        "a chunkwise form through jaxrnn.chunkwise_scan (default: jaxrnn.scan, "
                        "the faster on a CPU at these sizes)")
    p.add_argument("--log-every", type=harness.positive_int, default=500,
                   help="steps between progress lines")
    return p


def bucket_accuracy(per_step: np.ndarray) -> dict[str, np.ndarray]:
    """``{bucket: [seeds]}`` from ``per_step [seeds, T]`` (step t-1 is the word of length t)."""
    return {name: per_step[:, lo:hi].mean(axis=1)
            for name, (lo, hi) in zip(BUCKET_NAMES, BUCKETS, strict=True)
            if hi <= per_step.shape[1]}


def run_task(task_name: str, names, args, log) -> tuple[dict, dict]:
    """Trains and tests every cell on one task: (results.json object, per-length curves)."""
    task = tt.state_tracking_task(task_name, TRAIN_LENGTHS[1], TRAIN_LENGTHS[0])
    test_length = BUCKETS[-1][1]
    tokens, targets = tt.word_problem_test_set(task, jax.random.PRNGKey(10**6), args.test_words,
                                               test_length)
    seeds = list(range(args.seed, args.seed + args.seeds))
    results, curves = {}, {}
    for name in names:
        cell = harness.make_cell(name, args.hidden)
        start = time.perf_counter()
        trained = tt.train(cell, task, seeds=seeds, steps=args.steps,
                           batch_size=args.batch_size, lr=args.lr, embed_size=args.embed_size,
                           parallel=args.parallel, token_shift=args.token_shift, log=log,
                           log_every=args.log_every,
                           label=f"[{task_name}] {name}")
        per_step = tt.accuracy_per_step(cell, trained.params, tokens, targets,
                                        token_shift=args.token_shift)
        wall = time.perf_counter() - start
        buckets = bucket_accuracy(per_step)
        train_acc = per_step[:, TRAIN_LENGTHS[0] - 1:TRAIN_LENGTHS[1]].mean(axis=1)
        results[name] = {
            "accuracy": {b: float(np.mean(v)) for b, v in buckets.items()},
            "per_seed": {b: [float(x) for x in v] for b, v in buckets.items()},
            "train_lengths_accuracy": [float(x) for x in train_acc],
            "final_loss": [float(x) for x in trained.final_loss],
            "hidden": args.hidden,
            "state_floats": tt.carry_floats(cell, args.embed_size),
            "wall_s": round(wall, 2),
        }
        curves[name] = per_step
        log(f"[{task_name}] {name}: " + ", ".join(
            f"{b} {tt.mean_std(v)}" for b, v in buckets.items())
            + f" (lengths 3-40: {tt.mean_std(train_acc)}; chance {task.chance:.3f}) "
            f"{wall:.1f}s")
    return ({"task": task_name, "chance": task.chance, "buckets": list(BUCKET_NAMES),
             "train_lengths": list(TRAIN_LENGTHS), "steps": args.steps,
             "seeds": seeds, "results": results}, curves)


def table(objects: list[dict]) -> str:
    """Cells x (task, bucket), mean +- std over seeds."""
    names = list(objects[0]["results"])
    head = ["cell"] + [f"{o['task']} {b}" for o in objects for b in o["buckets"]]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name in names:
        row = [name] + [tt.mean_std(o["results"][name]["per_seed"][b])
                        for o in objects for b in o["buckets"]]
        lines.append("| " + " | ".join(row) + " |")
    notes = [f"{o['task']}: chance {o['chance']:.3f}, {o['steps']} steps, seeds "
             f"{o['seeds']}, trained on lengths {o['train_lengths'][0]}-"
             f"{o['train_lengths'][1]}" for o in objects]
    return ("Test accuracy by length bucket (mean ± std over seeds).\n\n" + "\n".join(lines)
            + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n\n| cell | " + " | ".join(
                f"{o['task']} wall s" for o in objects) + " |\n|---" + "|---:" * len(objects)
            + "|\n" + "\n".join(f"| {n} | " + " | ".join(
                f"{o['results'][n]['wall_s']:.0f}" for o in objects) + " |" for n in names)
            + "\n")


def plots(out: Path, objects: list[dict], curves: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(objects[0]["results"])
    values = np.array([[o["results"][n]["accuracy"][b] for o in objects for b in o["buckets"]]
                       for n in names])
    columns = [f"{o['task']} {b}" for o in objects for b in o["buckets"]]
    tt.heatmap(out / "heatmap.png", names, columns, values,
               "test accuracy by length bucket (mean over seeds)",
               chance=[o["chance"] for o in objects])
    fig, axes = plt.subplots(1, len(objects), figsize=(6.5 * len(objects), 4.2), squeeze=False)
    palette = plt.get_cmap("tab10").colors
    for ax, o, task_curves in zip(axes[0], objects, curves, strict=True):
        for i, name in enumerate(names):
            per_step = task_curves[name]
            lengths = np.arange(1, per_step.shape[1] + 1)
            ax.plot(lengths, per_step.mean(axis=0), label=name, color=palette[i % 10],
                    linestyle="-" if i < 10 else "--", linewidth=1.2)
        ax.axvspan(*o["train_lengths"], color="grey", alpha=0.15, label="training lengths")
        ax.axhline(o["chance"], color="black", linestyle=":", linewidth=1, label="chance")
        ax.set(title=f"{o['task']}: accuracy against word length", xlabel="word length",
               ylabel="accuracy (mean over seeds)", xscale="log", ylim=(0, 1.02))
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_length.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    p = build_parser()
    args = harness.parse(p, argv)
    tasks, names = tt.tasks_and_cells(p, args, list(tt.STATE_TRACKING), DEFAULT_VARIANTS,
                                      SMOKE_VARIANTS)
    if args.smoke:
        args.seeds, args.steps, args.hidden = min(args.seeds, 2), min(args.steps, 30), 8
        args.embed_size, args.batch_size, args.test_words = 8, 16, 16
        args.log_every = 15

    def log(message: str) -> None:
        print(message, flush=True)

    with harness.start(args, not_compared=("log_every",)) as run:
        run.write_config({"tasks": tasks, "variants": list(names),
                          "buckets": BUCKET_NAMES})
        objects, curves = [], []
        for task_name in tasks:
            obj, task_curves = run_task(task_name, names, args, log)
            objects.append(obj)
            curves.append(task_curves)
        run.write_results(objects[0] if len(objects) == 1 else objects)
        markdown = table(objects)
        (run.out / "results.md").write_text(markdown)
        plots(run.out, objects, curves)
        log("\n" + markdown)
        log(f"wrote {run.out}/results.json, results.md, heatmap.png, accuracy_vs_length.png")
    return objects


if __name__ == "__main__":
    harness.main(main)
