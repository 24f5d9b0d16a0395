"""Trace, lower and compile time of jitted RNN training and inference steps on this machine.

    python benchmarks/trace_compile.py --cells gru,lstm,mingru --repeats 10 --against-cpu-only \
        --out runs/trace_compile.json

For each cell, shape (B, T, H; input size H) and kind (``train``: value and gradients of
``sum(ys ** 2)`` through ``jaxrnn.scan`` with the default strategy; ``infer``: the forward
pass), ``--repeats`` times: clear JAX's caches, then ``jax.jit(f).trace(...)``, ``.lower()`` and
``.compile()``. Reports the median process CPU time (all threads; steadier than wall time on a
shared machine) of each phase (trace: Python tracing and autodiff to a jaxpr; lower: jaxpr to
StableHLO; compile: XLA) and of the three together.

``--against-cpu-only`` measures, alternated in the same process, a second table: every
platform given the CPU's forward-pass choices (``jaxrnn.tuning.TUNING["cpu"]`` with its
``_grad`` entries set to the forward ones), which is the program a library that read the
tracing machine's platform would build on a CPU: nothing is staged per platform. The row then
holds both, their ratio, and whether the two CPU modules are the same (source locations aside).
Alternating in one process matters: across processes, the compile time of one and the same
module moved by up to 15% on a shared 2-core machine. The row also gives the median over
repeats of the difference in trace + lower time between the two tables, measured back to back:
the part of the cost that does not go through XLA, and much less noisy than compile time.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn
from jaxrnn import tuning

CELLS = {"lstm": jaxrnn.LSTM, "gru": jaxrnn.GRU, "mingru": jaxrnn.MinGRU}
PHASES = ("trace", "lower", "compile")


def step(cell, kind):
    def forward(p, x):
        return jnp.sum(jaxrnn.scan(cell, p, x)[0] ** 2)

    return jax.jit(jax.value_and_grad(forward) if kind == "train" else forward)


def cpu_only_table() -> dict[str, tuning.PlatformTuning]:
    """Every platform with the CPU's forward-pass choices: nothing differs between platforms."""
    cpu = tuning.TUNING["cpu"]
    flat = dataclasses.replace(cpu, fused_max_batch_grad=cpu.fused_max_batch,
                               not_fused_grad=cpu.not_fused)
    return {"cpu": flat, "default": flat}


def module_digest(lowered) -> str:
    text = re.sub(r"loc\([^)]*\)", "", lowered.as_text(debug_info=False))
    return hashlib.md5(text.encode()).hexdigest()


def compile_once(fn, params, xs) -> tuple[dict[str, float], str]:
    jax.clear_caches()
    c0 = time.process_time()
    traced = fn.trace(params, xs)
    c1 = time.process_time()
    lowered = traced.lower()
    c2 = time.process_time()
    lowered.compile()
    c3 = time.process_time()
    times = dict(zip(PHASES, (1e3 * (c1 - c0), 1e3 * (c2 - c1), 1e3 * (c3 - c2)), strict=True))
    return times, module_digest(lowered)


def measure(name, shape, kind, repeats, tables) -> dict:
    b, t, h = shape
    cell = CELLS[name](h)
    params = cell.init(jax.random.PRNGKey(0), h)
    xs = jax.ShapeDtypeStruct((b, t, h), jnp.float32)
    samples = {label: {phase: [] for phase in PHASES} for label in tables}
    digests = {}
    saved = dict(tuning.TUNING)
    try:
        for i in range(repeats):
            order = list(tables) if i % 2 == 0 else list(tables)[::-1]
            for label in order:
                tuning.TUNING.clear()
                tuning.TUNING.update(tables[label])
                times, digests[label] = compile_once(step(cell, kind), params, xs)
                for phase, ms in times.items():
                    samples[label][phase].append(ms)
    finally:
        tuning.TUNING.clear()
        tuning.TUNING.update(saved)
    row = {"cell": name, "shape": list(shape), "kind": kind, "repeats": repeats}
    for label, by_phase in samples.items():
        medians = {phase: statistics.median(v) for phase, v in by_phase.items()}
        row[label] = {**{f"{phase}_cpu_ms_median": m for phase, m in medians.items()},
                      "cpu_ms_sum_of_medians": sum(medians.values())}
    if len(tables) == 2:
        row["same_module"] = digests["current"] == digests["cpu_only"]
        row["ratio"] = (row["current"]["cpu_ms_sum_of_medians"]
                        / row["cpu_only"]["cpu_ms_sum_of_medians"])
        front = {label: [t + lo for t, lo in zip(by_phase["trace"], by_phase["lower"],
                                                 strict=True)]
                 for label, by_phase in samples.items()}
        row["trace_lower_ms_paired_difference_median"] = statistics.median(
            c - o for c, o in zip(front["current"], front["cpu_only"], strict=True))
    return row


def describe(row) -> str:
    parts = []
    for label in ("cpu_only", "current"):
        if label in row:
            r = row[label]
            parts.append(f"{label} {r['cpu_ms_sum_of_medians']:.0f} ms (" + ", ".join(
                f"{phase} {r[f'{phase}_cpu_ms_median']:.0f}" for phase in PHASES) + ")")
    text = f"{row['cell']} {'x'.join(map(str, row['shape']))} {row['kind']}: " + "; ".join(parts)
    if "ratio" in row:
        text += (f"; current/cpu_only {row['ratio']:.3f} (trace+lower "
                 f"{row['trace_lower_ms_paired_difference_median']:+.0f} ms), "
                 f"{'same' if row['same_module'] else 'different'} module")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cells", default="gru,lstm", help="comma-separated: lstm, gru, mingru")
    p.add_argument("--shapes", default="64x100x256,256x100x512", help="comma-separated BxTxH")
    p.add_argument("--kinds", default="train,infer", help="comma-separated: train, infer")
    p.add_argument("--repeats", type=int, default=10, help="compilations per case and table")
    p.add_argument("--against-cpu-only", action="store_true",
                   help="alternate with the CPU-only table (module docstring)")
    p.add_argument("--out", type=Path, default=None, help="JSON file to write (optional)")
    args = p.parse_args(argv)
    for name in args.cells.split(","):
        if name not in CELLS:
            p.error(f"--cells: {name!r} is not one of {', '.join(CELLS)}")
    tables = {"current": dict(tuning.TUNING)}
    if args.against_cpu_only:
        tables["cpu_only"] = cpu_only_table()
    rows = []
    for name in args.cells.split(","):
        for text in args.shapes.split(","):
            shape = tuple(int(v) for v in text.split("x"))
            for kind in args.kinds.split(","):
                rows.append(measure(name, shape, kind, args.repeats, tables))
                print(describe(rows[-1]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"jaxrnn": jaxrnn.__file__, "jax": jax.__version__,
                                        "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
