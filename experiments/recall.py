"""Recall against state size: multi-query associative recall and selective copying.

    python experiments/recall.py --task mqar,selective_copying --state-sizes 64,256,1024 --seeds 2

Tasks (``--task``, comma-separated):

- ``mqar``: multi-query associative recall (Arora et al. 2023, "Zoology: Measuring and Improving
  Recall in Efficient Language Models"): ``--pairs`` key-value pairs, then every key again as a
  query; answer each query with its value (chance ``1 / --values``).
- ``selective_copying``: selective copying (Gu & Dao 2023, "Mamba"; Feng et al. 2024, "Were
  RNNs All We Needed?"): ``--copy-tokens`` coloured tokens at random places among
  ``--copy-body`` noise tokens; then recall the colours in order (chance ``1 / --colours``).

State size: the floats in a cell's recurrent carry for one example (every leaf of
``initial_carry``; a complex entry counts two). For each target size of ``--state-sizes`` a
cell gets the largest size whose carry fits, through one knob, keeping the model width
(``--model-size``) fixed where the cell has a knob other than the width:

- a cell with a ``state_size`` field (``mamba``: H channels x N; ``lru``): N, at hidden size
  ``--model-size``;
- a cell with a ``key_size`` field (``deltanet``, ``gated_deltanet``, ``mlstm``, one head: the
  memory is d_v x d_k plus the last output of d_v): d_k, at d_v = ``--model-size``;
- any other cell (``np`` 2H, ``gru``/``mingru``/``rglru`` H, ``slstm`` 4H): the hidden size.

The chosen knob and the carry's actual size are in ``results.json``. The model: embedding
(``--model-size``) -> token shift (the cell reads ``[e_t, e_(t-1)]``; ``--no-token-shift``
turns it off) -> one cell -> two-layer head, trained as in ``state_tracking.py``
(``token_tasks``). Without the shift a one-layer model cannot bind a key to its value (the
step reading the value does not see the key), whatever its state. The test set is a fixed
batch of ``--test-sequences`` from the training distribution.

Expected (Zoology): at equal state size, the delta-rule and matrix-memory cells (``deltanet``,
``gated_deltanet``, ``mlstm``) recall far better than the diagonal linear recurrences
(``mamba``, ``rglru``, ``mingru``), and every cell recalls better with a larger state.

Output in ``--out``: ``results.json`` (one object per task, a list for several: ``{"task",
"chance", "state_sizes", "results": {variant: {"accuracy": {size: mean over seeds},
"per_seed": {size: [...]}, "hidden", "knob", "state_floats", "wall_s"}}}``), ``results.md``
(cells x tasks x sizes, mean +- std over seeds), ``heatmap.png`` and
``accuracy_vs_state_size.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

import harness
import token_tasks as tt

DEFAULT_VARIANTS = "mamba,rglru,mingru,deltanet,gated_deltanet,mlstm"
SMOKE_VARIANTS = "mamba,deltanet"
TASKS = ("mqar", "selective_copying")


def build_parser():
    p = harness.parser(__file__, __doc__, fast_smoke_compiles=True,
                       smoke="seconds-long check: 1 seed, 20 steps, sizes 16,64, tiny tasks")
    p.add_argument("--task", default="mqar,selective_copying",
                   help=f"comma-separated tasks among {', '.join(TASKS)}")
    p.add_argument("--variants", default=None,
                   help="comma-separated jaxrnn.variants names or module:attr naming a cell "
                        f"class or factory (default: {DEFAULT_VARIANTS}; with --smoke: "
                        f"{SMOKE_VARIANTS})")
    p.add_argument("--state-sizes", default="64,256,1024",
                   help="comma-separated target state sizes (floats per example)")
    p.add_argument("--seeds", type=harness.positive_int, default=2,
                   help="seeds per cell and size, vmapped (seeds --seed .. --seed + N - 1)")
    p.add_argument("--steps", type=harness.positive_int, default=1000,
                   help="training steps for every cell and size")
    p.add_argument("--batch-size", type=harness.positive_int, default=32,
                   help="training sequences per step and seed")
    p.add_argument("--model-size", type=harness.positive_int, default=16,
                   help="embedding width; hidden size of the cells sized by another knob")
    p.add_argument("--lr", type=harness.positive_float, default=3e-3,
                   help="peak Adam learning rate (cosine decay to lr/10)")
    p.add_argument("--pairs", type=harness.positive_int, default=8, help="mqar: key-value pairs")
    p.add_argument("--keys", type=harness.positive_int, default=16, help="mqar: key tokens")
    p.add_argument("--values", type=harness.positive_int, default=16, help="mqar: value tokens")
    p.add_argument("--copy-body", type=harness.positive_int, default=32,
                   help="selective_copying: noise tokens holding the coloured ones")
    p.add_argument("--copy-tokens", type=harness.positive_int, default=8,
                   help="selective_copying: coloured tokens to recall")
    p.add_argument("--colours", type=harness.positive_int, default=8,
                   help="selective_copying: colours")
    p.add_argument("--test-sequences", type=harness.positive_int, default=1024,
                   help="test sequences per task")
    p.add_argument("--token-shift", action=argparse.BooleanOptionalAction, default=True,
                   help="feed the cell [e_t, e_(t-1)], the token and the one before it (the "
                        "short convolution of Mamba and DeltaNet, smallest form)")
    p.add_argument("--parallel", action="store_true",
                   help="train linear recurrences through jaxrnn.associative_scan and cells with "
                        "a chunkwise form through jaxrnn.chunkwise_scan (default: jaxrnn.scan, "
                        "the faster on a CPU at these sizes)")
    p.add_argument("--log-every", type=harness.positive_int, default=500,
                   help="steps between progress lines")
    return p


def make_task(name: str, args) -> tt.TokenTask:
    if name == "mqar":
        return tt.mqar_task(args.pairs, args.keys, args.values)
    return tt.selective_copying_task(args.copy_body, args.copy_tokens, args.colours)


def knob_of(spec: str, model_size: int) -> str | None:
    """``"state_size"``, ``"key_size"`` or ``None`` (the hidden size): see the docstring."""
    cell = harness.make_cell(spec, model_size)
    fields = {f.name for f in dataclasses.fields(cell)} if dataclasses.is_dataclass(cell) else ()
    for knob in ("state_size", "key_size"):
        if knob in fields:
            return knob
    return None


def sized_cell(spec: str, target: int, model_size: int, input_size: int):
    """``(cell, hidden, knob text, carry floats)``: the largest cell of ``spec`` whose carry
    holds at most ``target`` floats, or ``None`` when even the smallest does not fit."""
    knob = knob_of(spec, model_size)

    def build(n):
        return (harness.make_cell(spec, model_size, **{knob: n}) if knob
                else harness.make_cell(spec, n))

    def floats(n):
        return tt.carry_floats(build(n), input_size)

    if floats(1) > target:
        return None
    low, high = 1, 2
    while floats(high) <= target:
        low, high = high, high * 2
    while high - low > 1:  # floats(low) <= target < floats(high)
        mid = (low + high) // 2
        low, high = (mid, high) if floats(mid) <= target else (low, mid)
    cell = build(low)
    hidden = model_size if knob else low
    return cell, hidden, f"{knob or 'hidden_size'}={low}", floats(low)


def run_task(task_name: str, names, sizes, args, log) -> dict:
    task = make_task(task_name, args)
    tokens, targets, weights = task.sample(jax.random.PRNGKey(10**6), args.test_sequences)
    mask = np.asarray(weights[0]) > 0  # the scored positions are the same in every sequence
    seeds = list(range(args.seed, args.seed + args.seeds))
    results = {}
    for name in names:
        record = {"accuracy": {}, "per_seed": {}, "hidden": {}, "knob": {}, "state_floats": {},
                  "wall_s_per_size": {}}
        for size in sizes:
            sized = sized_cell(name, size, args.model_size, args.model_size)
            if sized is None:
                log(f"[{task_name}] {name}: no size fits a state of {size} floats; skipped")
                continue
            cell, hidden, knob, floats = sized
            start = time.perf_counter()
            trained = tt.train(cell, task, seeds=seeds, steps=args.steps,
                               batch_size=args.batch_size, lr=args.lr,
                               embed_size=args.model_size, parallel=args.parallel,
                               token_shift=args.token_shift, log=log, log_every=args.log_every,
                               label=f"[{task_name}] {name} state {size} ({knob})")
            per_step = tt.accuracy_per_step(cell, trained.params, tokens, targets,
                                            token_shift=args.token_shift)
            wall = time.perf_counter() - start
            accuracy = per_step[:, mask].mean(axis=1)
            key = str(size)
            record["accuracy"][key] = float(np.mean(accuracy))
            record["per_seed"][key] = [float(a) for a in accuracy]
            record["hidden"][key], record["knob"][key] = hidden, knob
            record["state_floats"][key] = floats
            record["wall_s_per_size"][key] = round(wall, 2)
            log(f"[{task_name}] {name} state {size} ({knob}, {floats} floats): accuracy "
                f"{tt.mean_std(accuracy)} (chance {task.chance:.3f}) {wall:.1f}s")
        record["wall_s"] = round(sum(record["wall_s_per_size"].values()), 2)
        results[name] = record
    return {"task": task_name, "chance": task.chance, "description": task.description,
            "state_sizes": [str(s) for s in sizes], "steps": args.steps, "seeds": seeds,
            "results": results}


def table(objects: list[dict]) -> str:
    names = list(objects[0]["results"])
    cols = [(o, s) for o in objects for s in o["state_sizes"]]
    head = ["cell"] + [f"{o['task']} {s}" for o, s in cols]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * len(cols) + "|"]
    for name in names:
        row = [name]
        for o, s in cols:
            r = o["results"][name]
            row.append(f"{tt.mean_std(r['per_seed'][s])} ({r['knob'][s]})" if s in r["per_seed"]
                       else "—")
        lines.append("| " + " | ".join(row) + " |")
    notes = [f"{o['task']}: {o['description']}; chance {o['chance']:.3f}; {o['steps']} steps, "
             f"seeds {o['seeds']}" for o in objects]
    walls = ["| cell | " + " | ".join(f"{o['task']} wall s" for o in objects) + " |",
             "|---" + "|---:" * len(objects) + "|"]
    walls += [f"| {n} | " + " | ".join(f"{o['results'][n]['wall_s']:.0f}" for o in objects)
              + " |" for n in names]
    return ("Test accuracy by target state size (floats per example; mean ± std over seeds; "
            "the knob that sized the cell in brackets).\n\n" + "\n".join(lines) + "\n\n"
            + "\n".join(f"- {n}" for n in notes) + "\n\n" + "\n".join(walls) + "\n")


def plots(out: Path, objects: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(objects[0]["results"])
    cols = [(o, s) for o in objects for s in o["state_sizes"]]
    values = np.array([[o["results"][n]["accuracy"].get(s, np.nan) for o, s in cols]
                       for n in names])
    tt.heatmap(out / "heatmap.png", names, [f"{o['task']} {s}" for o, s in cols], values,
               "test accuracy by state size (mean over seeds)",
               chance=[o["chance"] for o in objects])
    fig, axes = plt.subplots(1, len(objects), figsize=(6 * len(objects), 4.2), squeeze=False)
    palette = plt.get_cmap("tab10").colors
    for ax, o in zip(axes[0], objects, strict=True):
        for i, name in enumerate(names):
            r = o["results"][name]
            sizes = [s for s in o["state_sizes"] if s in r["per_seed"]]
            floats = [r["state_floats"][s] for s in sizes]
            per_seed = [r["per_seed"][s] for s in sizes]
            ax.errorbar(floats, [np.mean(v) for v in per_seed],
                        yerr=[np.std(v) for v in per_seed], marker="o", capsize=3,
                        label=name, color=palette[i % 10])
        ax.axhline(o["chance"], color="black", linestyle=":", linewidth=1, label="chance")
        ax.set(title=f"{o['task']}: accuracy against state size", xscale="log",
               xlabel="floats in the recurrent state", ylabel="test accuracy", ylim=(0, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_state_size.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    p = build_parser()
    args = harness.parse(p, argv)
    tasks, names = tt.tasks_and_cells(p, args, list(TASKS), DEFAULT_VARIANTS, SMOKE_VARIANTS)
    try:
        sizes = sorted({int(s) for s in args.state_sizes.split(",") if s.strip()})
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        p.error(f"--state-sizes: expected comma-separated positive ints; got "
                f"{args.state_sizes!r}")
    if args.pairs > args.keys:
        p.error(f"--pairs {args.pairs} > --keys {args.keys}: the keys of a sequence are distinct")
    if args.copy_tokens > args.copy_body:
        p.error(f"--copy-tokens {args.copy_tokens} > --copy-body {args.copy_body}")
    if args.smoke:
        args.seeds, args.steps, args.model_size = 1, min(args.steps, 20), 4
        args.batch_size, args.test_sequences, args.log_every = 8, 16, 20
        args.pairs, args.keys, args.values = 3, 4, 4
        args.copy_body, args.copy_tokens, args.colours = 6, 2, 3
        if args.state_sizes == p.get_default("state_sizes"):
            sizes = [16, 64]

    def log(message: str) -> None:
        print(message, flush=True)

    with harness.start(args, not_compared=("log_every",)) as run:
        run.write_config({"tasks": tasks, "variants": list(names), "sizes": sizes})
        objects = [run_task(t, names, sizes, args, log) for t in tasks]
        run.write_results(objects[0] if len(objects) == 1 else objects)
        markdown = table(objects)
        (run.out / "results.md").write_text(markdown)
        plots(run.out, objects)
        log("\n" + markdown)
        log(f"wrote {run.out}/results.json, results.md, heatmap.png, "
            "accuracy_vs_state_size.png")
    return objects


if __name__ == "__main__":
    harness.main(main)
