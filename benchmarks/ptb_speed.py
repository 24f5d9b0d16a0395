#!/usr/bin/env python
"""PTB training speed: experiments/ptb_lm.py (jaxrnn) against plain PyTorch, small or medium.

    python benchmarks/ptb_speed.py --data-dir PATH/TO/ptb --max-steps 300 --out runs/ptb_speed
    python benchmarks/ptb_speed.py --preset medium --data-dir PATH/TO/ptb --max-steps 150 \
        --log-every 25 --out runs/ptb_speed_medium

Runs, one after the other and each in its own subprocess,

- ``benchmarks/ptb_torch.py --preset P --data-dir D --max-steps N --warmup-steps L``, and
- ``experiments/ptb_lm.py --preset P --data-dir D --max-steps N --log-every L``,

and prints both training throughputs (tokens/s) and their ratio. ptb_lm's tokens/s is read from
the ``"split": "train"`` lines of its metrics.jsonl, leaving out the first log interval (it holds
the compilation): total tokens / total seconds over the other intervals. The torch script leaves
out its first L steps likewise. ptb_lm's final validation/test evaluation is not timed (it runs
with --eval-batch-size 20 to keep it short). With --repeats R the pair runs R times,
alternating, and the medians are reported. ``--compute-dtype bfloat16`` passes that flag to both
scripts (jaxrnn's bf16 matmul operands against torch.autocast).

ptb_lm.py re-executes itself with glibc's allocator settings (jaxrnn/train/host.py: freed
memory stays in the process; variables already set keep their values, JAXRNN_SYSTEM_MALLOC=1
turns it off); the torch script runs as it comes, or, with ``--same-allocator``, under the same
settings. Each run's record says which allocator each side had. Outputs in --out:
ptb_torch_*.json, ptb_lm_*/ (the runs), results.json.
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

from jaxrnn.train.host import allocator_environ

ROOT = Path(__file__).resolve().parent.parent
# environment variables that change speed (the allocator, XLA, thread pools); recorded with
# the results, and inherited by every subprocess, so both sides of a comparison run under them
PERF_ENV = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "XLA_FLAGS", "OMP_", "MKL_")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding ptb.train.txt, ptb.valid.txt, ptb.test.txt (required)")
    p.add_argument("--preset", choices=["small", "medium"], default="small",
                   help="Zaremba et al.'s preset for both scripts")
    p.add_argument("--max-steps", type=int, default=300, help="updates per run")
    p.add_argument("--log-every", type=int, default=50,
                   help="ptb_lm's log interval; the first interval (and torch's first this "
                        "many steps) is not timed")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch.set_num_threads for ptb_torch.py (default 0: the number of cores)")
    p.add_argument("--compute-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="passed to both scripts (bfloat16: torch.autocast against jaxrnn's "
                   "compute_dtype)")
    p.add_argument("--same-allocator", action="store_true",
                   help="run ptb_torch.py under the glibc allocator settings that ptb_lm.py "
                        "gives itself (jaxrnn/train/host.py); by default each script runs as a "
                        "user gets it")
    p.add_argument("--repeats", type=int, default=1, help="run the pair this many times")
    p.add_argument("--out", type=Path, default=Path("runs/ptb_speed"), help="output folder")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    args = p.parse_args(argv)
    if args.max_steps < 2 * args.log_every:
        p.error(f"--max-steps ({args.max_steps}) must be at least twice --log-every "
                f"({args.log_every}): the first interval is not timed")
    return args


def interval_throughput(metrics_file: Path) -> tuple[float, int]:
    """tokens/s over every train interval but the first, and the number of steps it covers."""
    lines = [json.loads(s) for s in metrics_file.read_text().splitlines() if s.strip()]
    train = [r for r in lines if r.get("split") == "train" and r.get("tokens_per_sec")]
    if len(train) < 2:
        raise ValueError(f"{metrics_file}: {len(train)} train lines with tokens_per_sec; "
                         "need at least 2 (raise --max-steps)")
    steps = [b["step"] - a["step"] for a, b in zip(train, train[1:], strict=False)]
    # Each line's rate is over its own interval of n steps (n * k tokens, k tokens per step),
    # which took n * k / rate seconds; the pooled rate sum(n * k) / sum(n * k / rate) needs no k.
    step_seconds = sum(n / r["tokens_per_sec"] for n, r in zip(steps, train[1:], strict=True))
    return sum(steps) / step_seconds, sum(steps)


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> float:
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, timeout=timeout, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"exit code {proc.returncode} from {' '.join(cmd)}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.data_dir is None:
        print("error: --data-dir is required (a folder with the PTB files)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    common = ["--preset", args.preset, "--data-dir", str(args.data_dir.resolve()),
              "--max-steps", str(args.max_steps), "--compute-dtype", args.compute_dtype]
    # ptb_lm.py's own rule (jaxrnn/train/host.py): the user's variables and the opt-out win
    torch_env = allocator_environ() if args.same_allocator else None
    runs = []
    for rep in range(args.repeats):
        torch_json = out / f"ptb_torch_{stamp}_{rep}.json"
        lm_dir = out / f"ptb_lm_{stamp}_{rep}"
        run([sys.executable, str(ROOT / "benchmarks" / "ptb_torch.py"), *common,
             "--warmup-steps", str(args.log_every), "--threads", str(args.torch_threads),
             "--out", str(torch_json)], args.timeout, torch_env)
        torch_tps = json.loads(torch_json.read_text())["tokens_per_sec"]
        run([sys.executable, str(ROOT / "experiments" / "ptb_lm.py"), *common,
             "--log-every", str(args.log_every), "--eval-batch-size", "20",
             "--no-progress", "--out", str(lm_dir)], args.timeout)
        jax_tps, timed = interval_throughput(lm_dir / "metrics.jsonl")
        runs.append({"torch_tokens_per_sec": torch_tps, "jaxrnn_tokens_per_sec": jax_tps,
                     "ratio": jax_tps / torch_tps, "jaxrnn_timed_steps": timed,
                     "torch_json": str(torch_json), "ptb_lm_out": str(lm_dir),
                     "ptb_lm_host_allocator":
                         json.loads((lm_dir / "config.json").read_text()).get("host_allocator"),
                     "torch_env": {k: v for k, v in sorted((torch_env or os.environ).items())
                                   if k.startswith(PERF_ENV)}})
        print(f"run {rep + 1}: torch {torch_tps:,.0f} tokens/s, jaxrnn {jax_tps:,.0f} tokens/s, "
              f"ratio {jax_tps / torch_tps:.2f}x", flush=True)
    results = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "preset": args.preset, "compute_dtype": args.compute_dtype, "max_steps": args.max_steps,
        "log_every": args.log_every,
        "torch_threads": args.torch_threads, "same_allocator": args.same_allocator,
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(PERF_ENV)},
        "runs": runs,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "torch_tokens_per_sec": statistics.median(r["torch_tokens_per_sec"] for r in runs),
        "jaxrnn_tokens_per_sec": statistics.median(r["jaxrnn_tokens_per_sec"] for r in runs),
        "ratio": statistics.median(r["ratio"] for r in runs),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"PTB {args.preset} ({args.compute_dtype}), training tokens/s: jaxrnn "
          "(experiments/ptb_lm.py) "
          f"{results['jaxrnn_tokens_per_sec']:,.0f}, torch {results['torch_tokens_per_sec']:,.0f}"
          f"; ratio jaxrnn/torch {results['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
