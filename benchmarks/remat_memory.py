#!/usr/bin/env python
"""Memory of an LSTM training step over a long sequence, with and without rematerialisation.

    python benchmarks/remat_memory.py --out runs/remat_memory          # (B, T, H) = (8, 4096, 256)
    python benchmarks/remat_memory.py --remat 32,64,128 --repeats 5 --out runs/remat_memory_k
    python benchmarks/remat_memory.py --steps 256 --hidden 32 --out runs/remat_memory_tiny  # check

The issue's target: train T = 4096 at (B, T, H) = (8, 4096, 256) within 2 GiB (``--budget-mib``),
with a compile time that does not grow with T. For one ``jaxrnn.LSTM(H)`` layer (input size
D = H, ``--input-size`` to change it) the training step is
``jax.jit(jax.value_and_grad(loss))`` with ``loss = mean(output ** 2)`` and gradients for all
parameters. Settings, each in a fresh subprocess (this script re-invoked with ``--worker``):

- ``auto``: ``jaxrnn.scan(..., strategy="auto")``, the default path a user gets (fused where it
  applies; on a CPU at this size the hoisted projection is too large, so it runs "in_loop");
- ``in_loop``: the per-step formulation under plain autodiff, without remat;
- ``remat=k`` for each k in ``--remat``: ``jaxrnn.scan(..., remat=k)`` (strategy "auto", which
  with remat runs "in_loop" on a CPU and "hoisted" elsewhere).

For each it reports XLA's ``memory_analysis()`` of the compiled step (argument, output and
temp bytes and their sum, the "XLA total" the budget is checked against), the lower + compile
time in seconds, the median of ``--repeats`` training steps after one untimed call, and the
worker's peak resident set (``resource.getrusage(...).ru_maxrss``: the whole process including
Python, JAX and the inputs; ``base RSS`` is the same measure before compiling). On a GPU the
device's ``memory_stats()["peak_bytes_in_use"]`` is recorded as well (RSS is host memory there).

Outputs in ``--out``: ``results.json`` (every measurement, the machine, versions, the command,
the load average) and ``results.md`` (the table, also printed). Timings on a machine loaded
beyond its core count (load average in results.json) are not comparable between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rnn_speed import machine_info  # noqa: E402  (this folder's shared helpers)

MIB = 2**20


def max_rss_bytes() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * (1 if sys.platform == "darwin" else 1024)


def parse_setting(text: str) -> tuple[str, int | None]:
    """"auto" / "in_loop" / "hoisted" / "fused" -> (strategy, None); "remat=k" -> ("auto", k)."""
    if text in ("auto", "in_loop", "hoisted", "fused"):
        return text, None
    if text.startswith("remat="):
        value = text.split("=", 1)[1]
        if value.isdigit() and int(value) > 0:
            return "auto", int(value)
    raise ValueError(
        f"setting {text!r}; expected 'auto', 'in_loop', 'hoisted', 'fused' or 'remat=K' with a "
        "positive integer K"
    )


def parse_remat(text: str) -> list[int]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not all(v.isdigit() and int(v) > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"--remat: {text!r}; expected comma-separated positive integers, e.g. 16,64,256"
        )
    return [int(v) for v in values]


# ---------------------------------------------------------------------------------------------
# Worker side: one setting.


def run_worker(setting: str, args) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxrnn
    from jaxrnn.drivers.strategy import resolve_strategy

    strategy, remat = parse_setting(setting)
    hidden = args.hidden
    input_size = args.input_size or hidden
    cell = jaxrnn.LSTM(hidden) if args.cell == "lstm" else jaxrnn.GRU(hidden)
    key_x, key_p = jax.random.split(jax.random.PRNGKey(0))
    xs = jax.random.normal(key_x, (args.batch, args.steps, input_size), dtype=jnp.float32)
    params = cell.init(key_p, input_size)
    runs_as = resolve_strategy(strategy, cell, None, xs.shape, remat=remat is not None)

    def loss(params, xs):
        ys, _ = jaxrnn.scan(cell, params, xs, strategy=strategy, remat=remat)
        return jnp.mean(ys**2)

    step = jax.jit(jax.value_and_grad(loss))
    jax.block_until_ready((params, xs))
    base_rss = max_rss_bytes()
    start = time.perf_counter()
    compiled = step.lower(params, xs).compile()
    compile_s = time.perf_counter() - start

    start = time.perf_counter()
    value, _ = jax.block_until_ready(compiled(params, xs))
    first_call_s = time.perf_counter() - start
    if not bool(jnp.isfinite(value)):
        raise FloatingPointError(f"non-finite loss {value}")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, xs))
        times.append(time.perf_counter() - start)

    result = {
        "setting": setting, "strategy": strategy, "remat": remat, "runs_as": runs_as,
        "compile_s": compile_s, "first_call_s": first_call_s,
        "step_median_s": statistics.median(times), "step_times_s": times,
        "base_rss_bytes": base_rss, "peak_rss_bytes": max_rss_bytes(),
        "device": str(jax.devices()[0]), "backend": jax.default_backend(),
        "jax_version": jax.__version__, "jaxrnn_version": jaxrnn.__version__,
    }
    analysis = compiled.memory_analysis()
    if analysis is not None:
        parts = {k: int(getattr(analysis, f"{k}_size_in_bytes", 0) or 0)
                 for k in ("argument", "output", "temp", "alias", "generated_code")}
        parts["total"] = parts["argument"] + parts["output"] + parts["temp"]
        parts["xla_peak_memory_in_bytes"] = getattr(analysis, "peak_memory_in_bytes", None)
        result["xla_memory_bytes"] = parts
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
        result["device_peak_bytes_in_use"] = int(stats["peak_bytes_in_use"])
    return result


# ---------------------------------------------------------------------------------------------
# Driver side: one subprocess per setting, the table.


def spawn(setting: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", setting,
               "--cell", args.cell, "--batch", str(args.batch), "--steps", str(args.steps),
               "--hidden", str(args.hidden), "--input-size", str(args.input_size),
               "--repeats", str(args.repeats), "--result-file", str(result_file)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return {"setting": setting, "status": "error",
                    "reason": f"timeout after {args.timeout} s"}
        wall = time.perf_counter() - start
        if proc.returncode == 0 and result_file.exists():
            return json.loads(result_file.read_text()) | {"status": "ok", "worker_wall_s": wall}
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"setting": setting, "status": "error",
                "reason": f"exit {proc.returncode}: " + " | ".join(tail)}


def _mib(value) -> str:
    return "n/a" if value is None else f"{value / MIB:.1f}"


def table(results: list[dict], args) -> str:
    budget = args.budget_mib * MIB
    lines = [
        f"{args.cell.upper()} training step, (B, T, H) = ({args.batch}, {args.steps}, "
        f"{args.hidden}), D = {args.input_size or args.hidden}; XLA memory_analysis in MiB; "
        f"budget {args.budget_mib:g} MiB checked against XLA total.",
        "",
        "| setting | runs as | argument | output | temp | XLA total | within budget "
        "| peak RSS | base RSS | compile s | step s (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    failed = []
    for r in results:
        if r.get("status") != "ok":
            failed.append(f"- {r['setting']}: {r.get('reason')}")
            continue
        mem = r.get("xla_memory_bytes") or {}
        total = mem.get("total")
        within = "n/a" if total is None else ("yes" if total <= budget else "no")
        lines.append(
            f"| {r['setting']} | {r['runs_as']} | {_mib(mem.get('argument'))} "
            f"| {_mib(mem.get('output'))} | {_mib(mem.get('temp'))} | {_mib(total)} | {within} "
            f"| {_mib(r['peak_rss_bytes'])} | {_mib(r['base_rss_bytes'])} "
            f"| {r['compile_s']:.2f} | {r['step_median_s']:.3f} |"
        )
    if failed:
        lines += ["", "Not measured:", *failed]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4096, help="sequence length T")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--input-size", type=int, default=0, help="D; 0 means D = hidden")
    parser.add_argument("--remat", type=parse_remat, default=[16, 64, 256],
                        help="chunk lengths k, comma-separated (default 16,64,256)")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps")
    parser.add_argument("--budget-mib", type=float, default=2048.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per setting")
    parser.add_argument("--out", type=Path, default=Path("runs/remat_memory"))
    parser.add_argument("--worker", metavar="SETTING", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("batch", "steps", "hidden", "repeats"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be a positive integer; got {getattr(args, name)}")
    if args.input_size < 0:
        parser.error(f"--input-size must be 0 (= hidden) or positive; got {args.input_size}")

    if args.worker:
        result = run_worker(args.worker, args)
        args.result_file.write_text(json.dumps(result))
        return 0

    settings = ["auto", "in_loop"] + [f"remat={k}" for k in args.remat]
    results = []
    for setting in settings:
        print(f"[{time.strftime('%H:%M:%S')}] {setting} ...", flush=True)
        results.append(spawn(setting, args))
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(results, args)
    info = machine_info()
    info["load_average"] = os.getloadavg()
    record = {"command": [sys.executable, *sys.argv], "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        if k not in ("worker", "result_file")}, "machine": info, "results": results}
    (args.out / "results.json").write_text(json.dumps(record, indent=2))
    header = (f"Machine: {info['processor']}, {info['cpu_count']} cores, load average "
              f"{info.get('load_average')}.\n\n")
    (args.out / "results.md").write_text(header + text)
    print(text)
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0 if all(r.get("status") == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
