#!/usr/bin/env python
"""Where a training step's time goes: XLA's own ops, timed by the JAX profiler.

    python benchmarks/profile_step.py --model layer --cell lstm --shape 64x100x256
    python benchmarks/profile_step.py --model layer --shape 256x100x512 --compute-dtype bfloat16
    python benchmarks/profile_step.py --model ptb-small          # experiments/ptb_lm.py's step
    python benchmarks/profile_step.py --model ptb-medium --top 40 --out runs/profile_medium

``--model layer`` profiles what ``benchmarks/rnn_speed.py`` times: ``jax.value_and_grad`` of
``mean(StackedRNN(cell(H)).apply(params, xs) ** 2)`` with respect to params and xs.
``--model ptb-small`` / ``ptb-medium`` profiles Zaremba et al.'s language model step as
``experiments/ptb_lm.py`` builds it (``LanguageModel.loss``, SGD, clipping at global norm 5) on
random token ids (no data needed; the step does the same work on any ids).

The compiled step runs ``--warmup`` times, then ``--steps`` times under ``jax.profiler.trace``;
every thunk XLA executed is read back from the trace with ``jax.profiler.ProfileData`` and the
table lists the ops that took the most time per step: the op's name in the compiled HLO, how
often it ran per step (ops inside the time loop run once per time step), its result shape and the
JAX operation it came from (HLO metadata). "share" is against the step's time measured without
the profiler (the median of ``--steps`` calls; the profiler itself slows the step). A loop's own
row (``while.N``) includes the ops that ran inside it, which are listed too, and thunks can
overlap on a multi-core CPU, so the rows do not add up to the step time.
Outputs in --out: profile.json and profile.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

# environment variables that change speed (the allocator, XLA, thread pools), kept in profile.json
PERF_ENV = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "XLA_FLAGS", "OMP_", "MKL_")
# the executor's own spans and Python frames, not ops
NOT_OPS = ("ThunkExecutor", "block_until_ready", "SlinkyThreadPool", "profiler.py", "$")


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        b, t, h = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shape {text!r}: expected BxTxH, e.g. 20x35x200") from None
    return b, t, h


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["layer", "ptb-small", "ptb-medium"], default="layer")
    p.add_argument("--cell", choices=["lstm", "gru"], default="lstm", help="for --model layer")
    p.add_argument("--shape", type=parse_shape, default=(64, 100, 256),
                   help="BxTxH for --model layer (input size H)")
    p.add_argument("--strategy", default="auto", help="StackedRNN strategy (--model layer)")
    p.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--steps", type=int, default=3, help="profiled steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
    p.add_argument("--top", type=int, default=25, help="rows in the table")
    p.add_argument("--out", type=Path, default=None, help="write profile.json and profile.md")
    return p.parse_args(argv)


def build_step(args):
    """Returns (compiled step, its arguments, a description)."""
    import jax
    import jax.numpy as jnp

    import jaxrnn

    dtype = {"float32": None, "bfloat16": jnp.bfloat16}[args.compute_dtype]
    key = jax.random.PRNGKey(0)
    if args.model == "layer":
        b, t, h = args.shape
        cell = (jaxrnn.LSTM if args.cell == "lstm" else jaxrnn.GRU)(h, compute_dtype=dtype)
        rnn = jaxrnn.StackedRNN(cell, strategy=args.strategy)
        params, xs = rnn.init(key, h), jax.random.normal(key, (b, t, h))

        def loss(p, x):
            return jnp.mean(rnn.apply(p, x)[0] ** 2)

        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        what = f"{args.cell.upper()} layer training step at (B, T, H) = {args.shape}"
        return step.lower(params, xs).compile(), (params, xs), what

    import optax

    from jaxrnn.nn.language_model import LanguageModel

    hidden, bptt, init, dropout = (200, 20, 0.1, 0.0) if args.model == "ptb-small" else (
        650, 35, 0.05, 0.5)
    batch, vocab = 20, 10_000
    cell = jaxrnn.LSTM(hidden, compute_dtype=dtype)
    model = LanguageModel(vocab, jaxrnn.StackedRNN(cell, num_layers=2, dropout=dropout),
                          embed_size=hidden, dropout=dropout, init_scale=init)
    params = model.init(key)
    optimizer = optax.chain(optax.clip_by_global_norm(5.0), optax.sgd(1.0))
    opt_state = optimizer.init(params)
    tokens = jax.random.randint(key, (batch, bptt + 1), 0, vocab)
    carry = model.initial_state(params, batch)

    def step(params, opt_state, carry, tokens, key):
        def loss(p):
            return model.loss(p, tokens[:, :-1], tokens[:, 1:], carry, key=key, train=True)

        (value, (carry, _)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, carry, value

    operands = (params, opt_state, carry, tokens, key)
    what = f"PTB {args.model[4:]} preset training step (B = {batch}, bptt = {bptt})"
    return jax.jit(step).lower(*operands).compile(), operands, what


def hlo_index(hlo_text: str) -> dict[str, dict]:
    """instruction name -> {"shape": result shape, "source": JAX op_name metadata}."""
    index = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+?)[ {]([^\n]*)$", hlo_text, re.M):
        name, shape, rest = m.groups()
        source = re.search(r'op_name="([^"]*)"', rest)
        index[name] = {"shape": shape, "source": source.group(1) if source else ""}
    return index


def profile(compiled, operands, steps: int, warmup: int) -> tuple[dict, float, float]:
    """Runs ``compiled`` under the profiler; returns ({op: [total ns, count]}, step s, faults).

    The step time is the median of ``steps`` calls without the profiler; ``faults`` is the
    process's minor page faults per step over those calls (fresh pages the allocator maps and
    the kernel zero-fills: see "The host allocator" in benchmarks/RESULTS.md)."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(compiled(*operands))
    times = []
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*operands))
        times.append(time.perf_counter() - start)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before) / steps
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(steps):
                jax.block_until_ready(compiled(*operands))
        trace = next(Path(tmp).rglob("*.xplane.pb"))
        data = jax.profiler.ProfileData.from_serialized_xspace(trace.read_bytes())
    ops: dict[str, list] = collections.defaultdict(lambda: [0, 0])
    for plane in data.planes:
        for line in plane.lines:
            for event in line.events:
                if not any(marker in event.name for marker in NOT_OPS):
                    ops[event.name][0] += event.duration_ns
                    ops[event.name][1] += 1
    return dict(ops), statistics.median(times), faults


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    compiled, operands, what = build_step(args)
    ops, step_s, faults = profile(compiled, operands, args.steps, args.warmup)
    if not ops:
        print("error: the profiler recorded no XLA ops (is this jaxlib built without "
              "profiler support?)", file=sys.stderr)
        return 1
    index = hlo_index(compiled.as_text())
    rows = sorted(({"op": name, "ms_per_step": ns / args.steps / 1e6,
                    "runs_per_step": count / args.steps, **index.get(name, {})}
                   for name, (ns, count) in ops.items()), key=lambda r: -r["ms_per_step"])
    step_ms = step_s * 1e3
    lines = [f"{what}, compute dtype {args.compute_dtype}; jax {jax.__version__}, backend "
             f"{jax.default_backend()}; {step_ms:.1f} ms/step (median, without the profiler), "
             f"{faults:,.0f} minor page faults/step. "
             "A while.N row includes the ops run inside its loop.", "",
             "| op (compiled HLO) | ms/step | share | runs/step | result | from |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows[: args.top]:
        share = 100 * r["ms_per_step"] / step_ms
        lines.append(f"| {r['op']} | {r['ms_per_step']:.2f} | {share:.0f}% "
                     f"| {r['runs_per_step']:g} | {r.get('shape', '')[:40]} "
                     f"| {r.get('source', '')[-60:]} |")
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"model": args.model, "cell": args.cell, "shape": list(args.shape),
                "strategy": args.strategy, "compute_dtype": args.compute_dtype,
                "steps": args.steps, "step_ms": step_ms, "minor_faults_per_step": faults,
                "what": what,
                "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(PERF_ENV)},
                "jax_version": jax.__version__, "command": " ".join(sys.argv)}
        (args.out / "profile.json").write_text(json.dumps({"meta": meta, "ops": rows}, indent=1))
        (args.out / "profile.md").write_text(table + "\n")
        print(f"wrote {args.out}/profile.json, profile.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
