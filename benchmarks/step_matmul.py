#!/usr/bin/env python
"""One recurrent step's matmul, alone: XLA inside ``lax.scan`` against torch (oneDNN).

    python benchmarks/step_matmul.py --out runs/step_matmul
    python benchmarks/step_matmul.py --shapes 20x200,64x256 --threads 1,2 --out runs/step_matmul

An LSTM's time loop cannot be batched over time: every step multiplies the state by the
recurrent weight, forward ``[B, H] x [H, 4H]`` and backward ``[B, 4H] x [4H, H]``. At the batch
sizes of language modelling these products are small (6.4 MFLOP at B = 20, H = 200), and how fast
a library runs them, one after the other, bounds its training step. This script isolates that
cost:

- jax: ``lax.scan`` over T steps of ``s = tanh(s @ W)[:, :n]`` (each step depends on the last,
  so XLA can neither hoist nor batch the products), under ``jax.jit``; microseconds per step.
- torch: the same products in a Python loop, ``torch.mm(s, W, out=buf)`` (oneDNN), Python's
  per-call overhead included (which only favours jax).

Each implementation runs in its own subprocess per thread count, pinned to that many CPUs with
``os.sched_setaffinity`` before jax or torch starts (XLA sizes its thread pool from the CPUs it
may use; torch also gets ``torch.set_num_threads``). Where the OS has no affinity call (macOS)
the rows say ``"pinned": false`` and only torch's thread count is set. Median of ``--repeats``
timed loops after a warm-up. Outputs in --out: results.json, results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# environment variables that change speed (the allocator, XLA, thread pools), kept in the JSON
PERF_ENV = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "XLA_FLAGS", "OMP_", "MKL_")


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in text.split(","):
        try:
            b, h = (int(n) for n in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--shapes {item!r}: expected BxH, e.g. 20x200") from None
        shapes.append((b, h))
    return shapes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=parse_shapes,
                   default=parse_shapes("20x200,20x650,64x256,256x512"),
                   help="comma-separated BxH (the LSTM's gate matmuls [B, H] x [H, 4H])")
    p.add_argument("--threads", default="1,2", help="comma-separated CPU counts")
    p.add_argument("--steps", type=int, default=50, help="time steps per timed loop")
    p.add_argument("--repeats", type=int, default=20, help="timed loops (median)")
    p.add_argument("--impls", default="jax,torch", help="jax, torch or both")
    p.add_argument("--out", type=Path, default=None, help="write results.json and results.md")
    p.add_argument("--worker", nargs=3, metavar=("IMPL", "THREADS", "SHAPES"), default=None,
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _pin(threads: int) -> bool:
    """Restricts this process to ``threads`` CPUs; False where the OS cannot (e.g. macOS)."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    cpus = sorted(os.sched_getaffinity(0))
    if threads > len(cpus):
        raise SystemExit(f"--threads {threads}: only {len(cpus)} CPUs are available")
    os.sched_setaffinity(0, cpus[:threads])
    return True


def _median_us(run, steps: int, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / steps * 1e6


def time_jax(shapes, steps, repeats) -> list[dict]:
    import jax
    import jax.numpy as jnp

    rows = []
    for b, h in shapes:
        key = jax.random.PRNGKey(0)
        # forward: [B, H] x [H, 4H]; backward: [B, 4H] x [4H, H] (tiled back to 4H for the carry)
        for kind, (k, n) in (("forward", (h, 4 * h)), ("backward", (4 * h, h))):
            w = jax.random.normal(key, (k, n), jnp.float32) / k ** 0.5
            s0 = jnp.ones((b, k), jnp.float32)

            def body(s, _, w=w, k=k, n=n):
                z = jnp.tanh(s @ w)
                return (z[:, :k] if n >= k else jnp.tile(z, (1, k // n))), None

            loop = jax.jit(lambda s, w=w, body=body: jax.lax.scan(body, s, None, length=steps)[0])

            def run(loop=loop, s0=s0):
                jax.block_until_ready(loop(s0))

            us = _median_us(run, steps, repeats)
            rows.append({"impl": "jax", "B": b, "H": h, "kind": kind, "m": b, "k": k, "n": n,
                         "us_per_step": us, "gflops": 2 * b * k * n / us / 1e3})
    return rows


def time_torch(shapes, steps, repeats, threads) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    rows = []
    for b, h in shapes:
        for kind, (k, n) in (("forward", (h, 4 * h)), ("backward", (4 * h, h))):
            w = torch.randn(k, n) / k ** 0.5
            s = torch.ones(b, k)
            buf = torch.empty(b, n)

            def run(w=w, s=s, buf=buf):
                with torch.no_grad():
                    for _ in range(steps):
                        torch.mm(s, w, out=buf)
                        torch.tanh_(buf)

            us = _median_us(run, steps, repeats)
            rows.append({"impl": "torch", "B": b, "H": h, "kind": kind, "m": b, "k": k, "n": n,
                         "us_per_step": us, "gflops": 2 * b * k * n / us / 1e3})
    return rows


def worker(impl: str, threads: int, shapes, steps: int, repeats: int) -> list[dict]:
    pinned = _pin(threads)
    rows = (time_jax(shapes, steps, repeats) if impl == "jax"
            else time_torch(shapes, steps, repeats, threads))
    for row in rows:
        row["threads"], row["pinned"] = threads, pinned
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| B x H | product | threads | jax us/step | torch us/step | jax GFLOP/s | "
             "torch GFLOP/s | jax / torch time |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    keyed = {(r["impl"], r["B"], r["H"], r["kind"], r["threads"]): r for r in rows}
    for (impl, b, h, kind, threads), r in sorted(keyed.items(), key=lambda kv: kv[0][1:]):
        if impl != "jax":
            continue
        t = keyed.get(("torch", b, h, kind, threads))
        product = f"[{r['m']},{r['k']}]x[{r['k']},{r['n']}]"
        lines.append(
            f"| {b}x{h} | {kind} {product} | {threads} | {r['us_per_step']:.1f} | "
            f"{t['us_per_step']:.1f} | {r['gflops']:.0f} | {t['gflops']:.0f} | "
            f"{r['us_per_step'] / t['us_per_step']:.2f} |" if t else
            f"| {b}x{h} | {kind} {product} | {threads} | {r['us_per_step']:.1f} | - | "
            f"{r['gflops']:.0f} | - | - |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        impl, threads, shapes = args.worker
        rows = worker(impl, int(threads), parse_shapes(shapes), args.steps, args.repeats)
        print(json.dumps(rows))
        return 0
    shapes_text = ",".join(f"{b}x{h}" for b, h in args.shapes)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for impl in args.impls.split(","):
            cmd = [sys.executable, __file__, "--worker", impl, str(threads), shapes_text,
                   "--steps", str(args.steps), "--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            rows += json.loads(proc.stdout.strip().splitlines()[-1])
    text = table(rows)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"command": " ".join(["python", "benchmarks/step_matmul.py", *sys.argv[1:]]),
                "steps": args.steps, "repeats": args.repeats, "cpus": os.cpu_count(),
                "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(PERF_ENV)}}
        (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (args.out / "results.md").write_text(text + "\n")
        print(f"wrote {args.out}/results.json, results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
