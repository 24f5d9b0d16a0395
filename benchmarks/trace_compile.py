"""Trace + compile time of jitted RNN training and inference steps on this machine.

    python benchmarks/trace_compile.py --cells gru,lstm --shapes 64x100x256,256x100x512 \
        --repeats 15 --out runs/trace_compile.json

For each cell, shape (B, T, H; input size H) and kind (``train``: value and gradients of
``sum(ys ** 2)`` through ``jaxrnn.scan`` with the default strategy; ``infer``: the forward
pass), ``--repeats`` times: clear JAX's caches, then ``jax.jit(f).lower(...).compile()``.
Reports the median and the spread of the process CPU time (all threads; steadier than wall
time on a shared machine) and of the wall time. Run it from two checkouts (``PYTHONPATH``) in
one sitting to compare versions: a ratio of medians measured together is what to compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn

CELLS = {"lstm": jaxrnn.LSTM, "gru": jaxrnn.GRU}


def step(cell, kind):
    def forward(p, x):
        return jnp.sum(jaxrnn.scan(cell, p, x)[0] ** 2)

    return jax.jit(jax.value_and_grad(forward) if kind == "train" else forward)


def measure(name, shape, kind, repeats):
    b, t, h = shape
    cell = CELLS[name](h)
    params = cell.init(jax.random.PRNGKey(0), h)
    xs = jax.ShapeDtypeStruct((b, t, h), jnp.float32)
    cpu, wall = [], []
    for _ in range(repeats):
        jax.clear_caches()
        c0, w0 = time.process_time(), time.perf_counter()
        step(cell, kind).lower(params, xs).compile()
        cpu.append(1e3 * (time.process_time() - c0))
        wall.append(1e3 * (time.perf_counter() - w0))
    return {"cell": name, "shape": list(shape), "kind": kind, "repeats": repeats,
            "cpu_ms_median": statistics.median(cpu), "cpu_ms_min": min(cpu),
            "cpu_ms_max": max(cpu), "wall_ms_median": statistics.median(wall)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cells", default="gru,lstm", help="comma-separated: lstm, gru")
    p.add_argument("--shapes", default="64x100x256,256x100x512", help="comma-separated BxTxH")
    p.add_argument("--kinds", default="train,infer", help="comma-separated: train, infer")
    p.add_argument("--repeats", type=int, default=15, help="compilations per case")
    p.add_argument("--out", type=Path, default=None, help="JSON file to write (optional)")
    args = p.parse_args(argv)
    rows = []
    for name in args.cells.split(","):
        for text in args.shapes.split(","):
            shape = tuple(int(v) for v in text.split("x"))
            for kind in args.kinds.split(","):
                row = measure(name, shape, kind, args.repeats)
                rows.append(row)
                print(f"{name} {text} {kind}: cpu {row['cpu_ms_median']:.1f} ms "
                      f"[{row['cpu_ms_min']:.1f}, {row['cpu_ms_max']:.1f}], "
                      f"wall {row['wall_ms_median']:.1f} ms", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"jaxrnn": jaxrnn.__file__, "jax": jax.__version__,
                                        "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
