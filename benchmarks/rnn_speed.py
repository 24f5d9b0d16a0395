#!/usr/bin/env python
"""LSTM / GRU layer speed: jaxrnn (every strategy) against flax, equinox and torch.

    python benchmarks/rnn_speed.py --out runs/rnn_speed        # everything (1-1.5 h on 2 cores)
    python benchmarks/rnn_speed.py --shapes standard --cells lstm --out runs/rnn_speed_lstm
    python benchmarks/rnn_speed.py --shapes 64x100x256 --impls torch,flax,jaxrnn:auto --out runs/x
    python benchmarks/rnn_speed.py --quick --out runs/rnn_speed_quick    # tiny check, a few minutes
    python benchmarks/rnn_speed.py --shapes long --cells lstm,mingru,minlstm \
        --impls torch,jaxrnn:layer,jaxrnn:assoc --out runs/parallel_scan   # parallel over time

For every cell (LSTM, GRU), shape (B, T, H) (input size D = H) and implementation, a fresh
subprocess (this script re-invoked with ``--worker IMPL SHAPE``) builds one layer and times

- the training step: forward + backward of ``loss = mean(output ** 2)`` with gradients for all
  parameters and the input;
- inference: the forward pass only.

Each is the median of ``--steps`` (>= 10) calls after ``--warmup`` calls. ``compile_s`` is the
first call minus the steady-state median (for JAX also ``lower_compile_s``, XLA's own compile).
Peak memory: for JAX the compiled training step's ``memory_analysis()`` (temp + argument +
output bytes); for every implementation the resident-set growth over the worker's baseline
during its first training step (sampled with psutil and ``ru_maxrss``); on a GPU torch's
``max_memory_allocated`` growth. The matmul roofline (``jnp.dot`` of two 2048x2048 float32
matrices, GFLOP/s) is measured in the same run, before and after the implementations; the
higher of the two is used. FLOPs of an LSTM training step: ``3 * 2*B*T*(D+H)*4H`` (forward,
and twice that backward); a GRU's are 3/4 of that.

Implementations (``--impls``): ``torch`` (nn.LSTM / nn.GRU; oneDNN on CPU, cuDNN on a GPU),
``flax`` (linen ``nn.RNN`` of ``OptimizedLSTMCell`` / ``GRUCell``), ``equinox``
(``eqx.nn.LSTMCell`` / ``GRUCell`` under ``lax.scan`` + ``vmap``), ``jaxrnn:STRATEGY``
(``jaxrnn.scan(cell, params, xs, strategy=STRATEGY)`` for in_loop, hoisted, fused, cudnn (cuDNN
through jax.experimental.rnn on an NVIDIA GPU, "fused" elsewhere), auto; a
strategy the installed jaxrnn does not accept is reported as n/a) and ``jaxrnn:layer``
(``jaxrnn.StackedRNN(jaxrnn.LSTM(H)).apply``: the path users get by default). Reduced precision,
opt-in on both sides and compared with each other: ``torch:bf16`` (the same module under
``torch.autocast(dtype=torch.bfloat16)``) and ``jaxrnn:layer-bf16`` (the layer with
``compute_dtype=jnp.bfloat16``: bf16 matmul operands, float32 accumulation and states).
The cells ``mingru`` and ``minlstm`` (Feng et al. 2024; jaxrnn only) run sequentially with
``jaxrnn:layer`` and in O(log T) depth with ``jaxrnn:assoc`` (``jaxrnn.associative_scan``); with
``lstm`` in the same run the table adds their speed-up over the sequential jaxrnn LSTM layer of
the same width (the issue's "minGRU/minLSTM >= 10x a sequential LSTM at T = 4096" target is a
GPU target; on a CPU the comparison is recorded as measured).

Every worker inherits the driver's environment (glibc's default allocator unless you set its
variables); ``--same-allocator`` runs them all under the settings that the experiment scripts
re-execute with (``jaxrnn.train.host``), for a like-for-like comparison of the two allocators.

Ratios are "reference time / this time": 1.20 means 20% more throughput than the reference.
Compare ratios from one run only. On a loaded machine (load average above the core count,
recorded in results.json) torch's multi-threaded oneDNN LSTM can be 10x slower than on an idle
one (its threads wait at barriers for descheduled peers); ``--torch-threads 1`` shows whether
that is happening, and such a run's ratios against torch say nothing about an idle machine.
Outputs in --out: results.json (every measurement, the machine and library versions),
results.md (the tables, also printed), rnn_speed.png (training-step speed-up over torch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STANDARD = [(20, 35, 200), (20, 35, 650), (64, 100, 256), (256, 100, 512)]
LONG = [(8, 4096, 256)]
QUICK = [(4, 12, 16)]
IMPLS = ["torch", "flax", "equinox", "jaxrnn:in_loop", "jaxrnn:hoisted", "jaxrnn:fused",
         "jaxrnn:cudnn", "jaxrnn:auto", "jaxrnn:layer", "torch:bf16", "jaxrnn:layer-bf16",
         "jaxrnn:assoc"]
CELLS = ["lstm", "gru", "mingru", "minlstm"]
MINIMAL = ("mingru", "minlstm")  # only jaxrnn has them


def shape_name(shape) -> str:
    return "x".join(str(n) for n in shape)


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    groups = {"standard": STANDARD, "long": LONG, "all": STANDARD + LONG, "quick": QUICK}
    shapes = []
    for token in text.split(","):
        token = token.strip()
        if token in groups:
            shapes += groups[token]
            continue
        parts = token.split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(
                f"--shapes: {token!r} is not a group ({', '.join(groups)}) or BxTxH "
                "with positive integers, e.g. 20x35x200")
        shapes.append(tuple(int(p) for p in parts))
    return shapes


def train_flops(cell: str, shape) -> float:
    """Matmul FLOPs of a training step (forward, and twice that backward), input size = H."""
    batch, steps, hidden = shape
    products = {"lstm": 2 * 4, "gru": 2 * 3, "mingru": 2, "minlstm": 3}[cell]  # (H x H) blocks
    return 3 * 2 * batch * steps * hidden * hidden * products


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Worker side: one implementation, one cell, one shape.


class RssPeak:
    """Resident-set growth over the baseline at ``__enter__``, peak sampled every millisecond.

    ``ru_maxrss`` catches peaks between samples when it rises during the block (it is the
    process's lifetime peak, so it says nothing when an earlier peak, e.g. imports, was higher).
    """

    def __init__(self, interval: float = 1e-3):
        self.interval, self.growth = interval, None

    @staticmethod
    def _maxrss() -> int:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib * (1 if sys.platform == "darwin" else 1024)

    def _rss(self) -> int:
        return self._proc.memory_info().rss if self._proc is not None else 0

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        try:
            import psutil

            self._proc = psutil.Process()
        except ImportError:
            self._proc = None
        self.base = self._rss() if self._proc is not None else self._maxrss()
        self.peak, self._max_before = self.base, self._maxrss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        max_after = self._maxrss()
        if max_after > self._max_before:
            self.peak = max(self.peak, max_after)
        self.growth = self.peak - self.base
        return False


def timings(call, sync, steps: int, warmup: int) -> dict:
    for _ in range(warmup):
        sync(call())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        sync(call())
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "times_s": times}


def bench_jax(forward, params, xs, steps, warmup) -> dict:
    """Times jit(value_and_grad(mean(forward ** 2))) and jit(forward) with compiled executables."""
    import jax
    import jax.numpy as jnp

    def loss(params, xs):
        return jnp.mean(forward(params, xs) ** 2)

    result = {}
    for kind, fn in (("train", jax.value_and_grad(loss, argnums=(0, 1))), ("infer", forward)):
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(params, xs).compile()
        lower_compile = time.perf_counter() - start
        with RssPeak() as rss:
            out = jax.block_until_ready(compiled(params, xs))
        first = time.perf_counter() - start
        if kind == "train" and not bool(jnp.isfinite(out[0])):
            raise FloatingPointError(f"non-finite loss {out[0]}")
        del out
        stats = timings(lambda c=compiled: c(params, xs), jax.block_until_ready, steps, warmup)
        stats |= {"first_call_s": first, "compile_s": first - stats["median_s"],
                  "lower_compile_s": lower_compile, "rss_growth_bytes": rss.growth}
        mem = compiled.memory_analysis()
        if mem is not None:
            parts = {k: int(getattr(mem, f"{k}_size_in_bytes", 0) or 0)
                     for k in ("temp", "argument", "output", "alias")}
            stats["xla_memory"] = parts | {
                "peak_bytes": parts["temp"] + parts["argument"] + parts["output"],
                "xla_peak_memory_in_bytes": getattr(mem, "peak_memory_in_bytes", None)}
        result[kind] = stats
    result["device"] = str(jax.devices()[0])
    return result


def forward_jaxrnn(impl, cell_name, hidden, xs, key):
    import jax

    import jaxrnn

    variant, _, precision = impl.split(":", 1)[1].partition("-")
    dtype = {"": None, "bf16": jax.numpy.bfloat16}[precision]
    classes = {"lstm": jaxrnn.LSTM, "gru": jaxrnn.GRU, "mingru": jaxrnn.MinGRU,
               "minlstm": jaxrnn.MinLSTM}
    cell = classes[cell_name](hidden, compute_dtype=dtype)
    if variant == "assoc":  # parallel over time (jaxrnn.associative_scan)
        if cell_name not in MINIMAL:
            raise NotAvailable(f"{cell_name} has no linear recurrence for associative_scan")
        return (lambda p, x: jaxrnn.associative_scan(cell, p, x)[0],
                cell.init(key, hidden), {"jaxrnn_version": jaxrnn.__version__})
    extra = {"jaxrnn_version": jaxrnn.__version__}
    rnn = jaxrnn.StackedRNN(cell)
    try:  # which strategy runs; the signature has changed before, so no failure if it changes
        from jaxrnn.drivers.strategy import resolve_strategy

        requested = rnn.strategy if variant == "layer" else variant
        try:
            extra["resolves_to"] = str(resolve_strategy(requested, cell, None, xs.shape))
        except TypeError:
            extra["resolves_to"] = str(resolve_strategy(requested))
    except Exception:
        pass
    if variant == "layer":
        return (lambda p, x: rnn.apply(p, x)[0]), rnn.init(key, hidden), extra
    params = cell.init(key, hidden)

    def forward(p, x):
        return jaxrnn.scan(cell, p, x, strategy=variant)[0]

    try:  # a strategy this jaxrnn does not have fails here, before any XLA compilation
        jax.eval_shape(forward, params, xs)
    except (ValueError, TypeError, NotImplementedError) as err:
        if variant in ("in_loop", "hoisted", "auto"):
            raise
        raise NotAvailable(f"jaxrnn.scan(strategy={variant!r}): {err}") from err
    return forward, params, extra


def forward_flax(cell_name, hidden, xs, key):
    import flax
    import flax.linen as nn

    cell = nn.OptimizedLSTMCell(hidden) if cell_name == "lstm" else nn.GRUCell(hidden)
    model = nn.RNN(cell)
    return model.apply, model.init(key, xs), {"flax_version": flax.__version__}


def forward_equinox(cell_name, hidden, xs, key):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    lstm = cell_name == "lstm"
    cls = eqx.nn.LSTMCell if lstm else eqx.nn.GRUCell
    params, static = eqx.partition(cls(hidden, hidden, key=key), eqx.is_array)

    def forward(params, xs):
        cell = eqx.combine(params, static)

        def one(seq):
            h0 = jnp.zeros((hidden,), seq.dtype)

            def body(carry, x):
                carry = cell(x, carry)
                return carry, carry[0] if lstm else carry

            return jax.lax.scan(body, (h0, h0) if lstm else h0, seq)[1]

        return jax.vmap(one)(xs)

    return forward, params, {"equinox_version": eqx.__version__}


def bench_torch(cell_name, shape, steps, warmup, threads, bf16=False) -> dict:
    import contextlib

    import torch

    torch.set_num_threads(threads or cpu_count())
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    batch, length, hidden = shape
    torch.manual_seed(0)
    cls = torch.nn.LSTM if cell_name == "lstm" else torch.nn.GRU
    module = cls(hidden, hidden, batch_first=True).to(device)
    xs = torch.randn(batch, length, hidden, device=device, requires_grad=True)

    def precision():
        if bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train():
        module.zero_grad(set_to_none=True)
        xs.grad = None
        with precision():
            loss = module(xs)[0].float().pow(2).mean()
        loss.backward()
        return loss

    def infer():
        with torch.inference_mode(), precision():
            return module(xs)[0]

    def sync(_):
        if gpu:
            torch.cuda.synchronize()

    result = {"device": str(device), "torch_version": torch.__version__,
              "threads": torch.get_num_threads(),
              "cudnn": bool(gpu and torch.backends.cudnn.is_available()),
              "output_dtype": str(infer().dtype)}  # bfloat16 when autocast took the LSTM
    for kind, call in (("train", train), ("infer", infer)):
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            allocated = torch.cuda.memory_allocated()
        start = time.perf_counter()
        with RssPeak() as rss:
            sync(call())
        first = time.perf_counter() - start
        stats = timings(call, sync, steps, warmup)
        stats |= {"first_call_s": first, "compile_s": first - stats["median_s"],
                  "rss_growth_bytes": rss.growth}
        if gpu:
            stats["cuda_peak_growth_bytes"] = torch.cuda.max_memory_allocated() - allocated
        result[kind] = stats
    return result


class NotAvailable(Exception):
    """The implementation (a library or a strategy) is not installed in this environment."""


def run_worker(impl, cell_name, shape, steps, warmup, torch_threads=0) -> dict:
    if impl == "roofline":
        return roofline(steps)
    if cell_name in MINIMAL and not impl.startswith("jaxrnn:"):
        raise NotAvailable(f"{impl} has no {cell_name} cell")
    if impl in ("torch", "torch:bf16"):
        try:
            import torch  # noqa: F401
        except ImportError as err:
            raise NotAvailable(str(err)) from err
        return bench_torch(cell_name, shape, steps, warmup, torch_threads,
                           bf16=impl == "torch:bf16")
    import jax

    batch, length, hidden = shape
    key_x, key_p = jax.random.split(jax.random.PRNGKey(0))
    xs = jax.random.normal(key_x, (batch, length, hidden), dtype="float32")
    try:
        if impl.startswith("jaxrnn:"):
            forward, params, extra = forward_jaxrnn(impl, cell_name, hidden, xs, key_p)
        elif impl == "flax":
            forward, params, extra = forward_flax(cell_name, hidden, xs, key_p)
        elif impl == "equinox":
            forward, params, extra = forward_equinox(cell_name, hidden, xs, key_p)
        else:
            raise ValueError(f"--worker: unknown implementation {impl!r}; expected one of {IMPLS}")
    except ImportError as err:
        raise NotAvailable(str(err)) from err
    return bench_jax(forward, params, xs, steps, warmup) | extra | {"jax_version": jax.__version__}


def roofline(reps: int, size: int = 2048) -> dict:
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype="float32")
    b = jax.random.normal(jax.random.PRNGKey(1), (size, size), dtype="float32")
    dot = jax.jit(jnp.dot)
    stats = timings(lambda: dot(a, b), jax.block_until_ready, reps, 2)
    return stats | {"gflops": 2 * size**3 / stats["median_s"] / 1e9, "size": size,
                    "backend": jax.default_backend(), "device": str(jax.devices()[0]),
                    "jax_version": jax.__version__}


# ---------------------------------------------------------------------------------------------
# Driver side: subprocesses, tables, plot.


def spawn(impl, cell, shape, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, shape_name(shape),
               "--cell", cell, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--torch-threads", str(args.torch_threads), "--result-file", str(result_file)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                  env=args.worker_env)
        except subprocess.TimeoutExpired:
            return {"status": "error", "reason": f"timeout after {args.timeout} s"}
        wall = time.perf_counter() - start
        if result_file.exists():
            return json.loads(result_file.read_text()) | {"worker_wall_s": wall}
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"status": "error", "reason": f"exit {proc.returncode}: " + " | ".join(tail)}


# environment variables that change speed (the allocator, XLA, thread pools); recorded with
# the results, and inherited by every subprocess, so both sides of a comparison run under them
PERF_ENV = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "XLA_FLAGS", "OMP_", "MKL_")


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": cpu_count(), "processor": platform.processor(),
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(PERF_ENV)}}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib import metadata

    for name in ("jax", "jaxlib", "flax", "equinox", "torch", "jaxrnn"):
        try:
            info[f"{name}_version"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[f"{name}_version"] = None
    return info


def fmt(value, spec, suffix="") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def make_tables(results: dict) -> str:
    rows, meta = results["rows"], results["meta"]
    roof = meta.get("roofline_gflops")
    lines = [f"Machine: {meta['machine']['processor']}, {meta['machine']['cpu_count']} cores; "
             f"backend {meta.get('backend')}; roofline (jnp.dot 2048^2 f32) "
             f"{fmt(roof, '.1f', ' GFLOP/s')}; load average {meta['loadavg_start']} at start, "
             f"{meta['loadavg_end']} at end.",
             "Ratios: reference time / this time (higher is faster). Memory: XLA "
             "memory_analysis (temp+argument+output) for JAX; RSS growth for all.", ""]

    def get(cell, shape, impl, kind):
        row = rows.get(f"{cell}/{shape}/{impl}", {})
        return row.get(kind, {}).get("median_s") if row.get("status") == "ok" else None

    bf16 = "torch:bf16" in meta["impls"]  # a column of ratios against torch under autocast
    # minGRU / minLSTM against the sequential LSTM layer of the same width (train and infer)
    vs_lstm = "lstm" in meta["cells"] and any(c in MINIMAL for c in meta["cells"])
    extra = (" vs torch bf16 |" if bf16 else "") + (" vs LSTM layer (train / infer) |"
                                                   if vs_lstm else "")
    for cell in meta["cells"]:
        lines += [f"### {cell.upper()}", "",
                  "| shape BxTxH | impl | train ms | vs torch | vs flax | % roofline | "
                  "infer ms | infer vs torch | compile s | XLA MB | RSS MB |" + extra,
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                  + "---:|" * extra.count("|")]
        for shape in meta["shapes"]:
            flops = train_flops(cell, [int(n) for n in shape.split("x")])
            torch_t, flax_t = get(cell, shape, "torch", "train"), get(cell, shape, "flax", "train")
            torch_i = get(cell, shape, "torch", "infer")
            torch16_t = get(cell, shape, "torch:bf16", "train")
            lstm_t = get("lstm", shape, "jaxrnn:layer", "train")
            lstm_i = get("lstm", shape, "jaxrnn:layer", "infer")
            for impl in meta["impls"]:
                row = rows.get(f"{cell}/{shape}/{impl}", {})
                if row.get("status") != "ok":
                    status = row.get("status", "missing")
                    lines.append(f"| {shape} | {impl} | {status} | | | | | | | | |"
                                 + " |" * extra.count("|"))
                    continue
                t, i = row["train"]["median_s"], row["infer"]["median_s"]
                runs = row.get("resolves_to")
                label = f"{impl} (runs {runs})" if runs and runs != impl.split(":")[-1] else impl
                xla = row["train"].get("xla_memory", {}).get("peak_bytes")
                rss = row["train"].get("rss_growth_bytes")
                lines.append(
                    f"| {shape} | {label} | {t * 1e3:.2f} | "
                    f"{fmt(torch_t and torch_t / t, '.2f', 'x')} | "
                    f"{fmt(flax_t and flax_t / t, '.2f', 'x')} | "
                    f"{fmt(roof and 100 * flops / t / (roof * 1e9), '.0f', '%')} | "
                    f"{i * 1e3:.2f} | {fmt(torch_i and torch_i / i, '.2f', 'x')} | "
                    f"{row['train']['compile_s']:.2f} | {fmt(xla and xla / 2**20, '.1f')} | "
                    f"{fmt(rss and rss / 2**20, '.1f')} |"
                    + (f" {fmt(torch16_t and torch16_t / t, '.2f', 'x')} |" if bf16 else "")
                    + (f" {fmt(lstm_t and lstm_t / t, '.2f', 'x')} / "
                       f"{fmt(lstm_i and lstm_i / i, '.2f', 'x')} |" if vs_lstm else ""))
        lines.append("")
    notes = [f"- {key}: {row.get('reason', '')}" for key, row in rows.items()
             if row.get("status") in ("n/a", "error")]
    if notes:
        lines += ["Not measured:", *notes, ""]
    return "\n".join(lines)


def make_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, rows = results["meta"], results["rows"]
    impls = [i for i in meta["impls"] if i != "torch"]
    fig, axes = plt.subplots(len(meta["cells"]), 1, figsize=(max(6, 2.2 * len(meta["shapes"])),
                             3.5 * len(meta["cells"])), squeeze=False)
    width = 0.8 / max(len(impls), 1)
    for ax, cell in zip(axes[:, 0], meta["cells"], strict=True):
        for k, impl in enumerate(impls):
            speedups = []
            for shape in meta["shapes"]:
                ref, row = rows.get(f"{cell}/{shape}/torch", {}), rows.get(f"{cell}/{shape}/{impl}")
                ok = row and row.get("status") == "ok" and ref.get("status") == "ok"
                speedups.append(ref["train"]["median_s"] / row["train"]["median_s"] if ok else 0)
            ax.bar([s + (k - (len(impls) - 1) / 2) * width for s in range(len(meta["shapes"]))],
                   speedups, width, label=impl)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(meta["shapes"])), meta["shapes"])
        ax.set_ylabel("speed-up over torch")
        ax.set_title(f"{cell.upper()} training step (B x T x H), {meta.get('backend')}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize="small")
    fig.tight_layout(rect=(0, 0.1 if len(meta["cells"]) == 1 else 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/rnn_speed"),
                   help="output folder (results.json, results.md, rnn_speed.png)")
    p.add_argument("--shapes", type=parse_shapes, default=None,
                   help="comma-separated BxTxH or groups standard, long, all (default: all)")
    p.add_argument("--cells", default="lstm,gru",
                   help="comma-separated: lstm, gru, mingru, minlstm (the last two: jaxrnn only)")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated from {IMPLS}")
    p.add_argument("--steps", type=int, default=10, help="timed calls (at least 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls after the first")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch.set_num_threads (default 0: the number of cores)")
    p.add_argument("--quick", action="store_true", help=f"tiny shape {QUICK}: checks the script")
    p.add_argument("--same-allocator", action="store_true",
                   help="run every worker (torch, flax and jaxrnn alike) under the glibc allocator "
                        "settings the experiment scripts use (jaxrnn/train/host.py)")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "SHAPE"), help=argparse.SUPPRESS)
    p.add_argument("--cell", default="lstm", help=argparse.SUPPRESS)
    p.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 10:
        p.error(f"--steps must be at least 10; got {args.steps}")
    if args.shapes is None:
        args.shapes = QUICK if args.quick else STANDARD + LONG
    if args.quick:
        args.warmup = min(args.warmup, 2)
    args.cells = [c.strip() for c in args.cells.split(",")]
    args.impls = [i.strip() for i in args.impls.split(",")]
    for name, values, allowed in (("--cells", args.cells, CELLS), ("--impls", args.impls, IMPLS)):
        bad = [v for v in values if v not in allowed]
        if bad:
            p.error(f"{name}: unknown {bad}; expected a comma-separated subset of {allowed}")
    return args


def worker_main(args) -> int:
    impl, shape = args.worker
    result = {"impl": impl, "cell": args.cell, "shape": shape,
              "loadavg": [round(x, 2) for x in os.getloadavg()]}
    try:
        result |= {"status": "ok"} | run_worker(impl, args.cell, parse_shapes(shape)[0],
                                                args.steps, args.warmup, args.torch_threads)
    except NotAvailable as err:
        result |= {"status": "n/a", "reason": str(err)}
    except Exception as err:  # reported in the table, the run goes on
        result |= {"status": "error", "reason": f"{type(err).__name__}: {err}"[:500]}
    args.result_file.write_text(json.dumps(result))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    args.out.mkdir(parents=True, exist_ok=True)
    shapes = [shape_name(s) for s in args.shapes]
    args.worker_env = None  # the workers inherit this process's environment
    if args.same_allocator:
        from jaxrnn.train.host import allocator_environ

        args.worker_env = allocator_environ()
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(),
            "cells": args.cells, "shapes": shapes, "impls": args.impls, "steps": args.steps,
            "warmup": args.warmup, "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "same_allocator": args.same_allocator,
            "worker_env": {k: v for k, v in sorted((args.worker_env or os.environ).items())
                           if k.startswith(PERF_ENV)}}
    print(f"{len(args.cells) * len(shapes) * len(args.impls)} workers; "
          f"load average {meta['loadavg_start']}", flush=True)
    roof_args = argparse.Namespace(**{**vars(args), "steps": 10 if args.quick else 20})
    roofs = [spawn("roofline", "lstm", (1, 1, 1), roof_args)]
    print(f"roofline: {fmt(roofs[0].get('gflops'), '.1f', ' GFLOP/s')}", flush=True)
    rows = {}
    # All implementations of one (cell, shape) run back to back, so their ratios share a moment.
    for cell in args.cells:
        for shape, name in zip(args.shapes, shapes, strict=True):
            for impl in args.impls:
                row = spawn(impl, cell, shape, args)
                rows[f"{cell}/{name}/{impl}"] = row
                if row.get("status") == "ok":
                    train_ms, infer_ms = (row[k]["median_s"] * 1e3 for k in ("train", "infer"))
                    print(f"{cell} {name:>14} {impl:<15} train {train_ms:9.2f} ms   "
                          f"infer {infer_ms:9.2f} ms", flush=True)
                else:
                    print(f"{cell} {name:>14} {impl:<15} {row['status']}: {row.get('reason')}",
                          flush=True)
    roofs.append(spawn("roofline", "lstm", (1, 1, 1), roof_args))
    gflops = [r["gflops"] for r in roofs if r.get("status") == "ok"]
    meta |= {"roofline": roofs, "roofline_gflops": max(gflops) if gflops else None,
             "backend": roofs[0].get("backend"),
             "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
    results = {"meta": meta, "rows": rows}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = make_tables(results)
    (args.out / "results.md").write_text(table + "\n")
    try:
        make_plot(results, args.out / "rnn_speed.png")
    except Exception as err:  # the numbers matter more than the picture
        print(f"(no plot: {err})")
    print(table)
    print(f"wrote {args.out / 'results.json'}, results.md, rnn_speed.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
