"""Every strategy of :func:`jaxrnn.scan` against ``strategy="in_loop"`` on this machine's
default device, values and gradients, and ``"cudnn"`` against ``"fused"``; writes JSON.

    python benchmarks/gpu_correctness.py --out runs/gpu_check/correctness.json

For the LSTM and the GRU, float32 and bfloat16 (``compute_dtype``), with lengths and reverse:
the largest absolute and relative differences of the outputs, final carries and all
gradients (params and input), and whether they lie within the tolerance (float32: rtol 1e-4,
atol 1e-5 with ``jax.default_matmul_precision("highest")``; bfloat16: 3e-2 of the largest
magnitude). Exit 1 when any comparison is outside it. ``"cudnn"`` runs cuDNN only for the
float32 LSTM on a CUDA GPU (``"fused"`` otherwise; the JSON records what ran).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn.drivers.strategy import resolve_strategy

SHAPE = (16, 40, 64)  # B, T, H (input size H)


def run(cell, strategy, params, xs, lengths):
    def loss(p, x):
        ys, final = jaxrnn.scan(cell, p, x, lengths=lengths, reverse=True, strategy=strategy)
        total = jnp.sum(ys * jnp.cos(ys))
        total += sum(jnp.sum(jnp.sin(f)) for f in jax.tree.leaves(final))
        return total, (ys, final)

    (value, (ys, final)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        params, xs)
    return jax.device_get((value, ys, final, grads))


def compare(got, want, bf16: bool) -> dict:
    worst_abs, worst_rel, ok = 0.0, 0.0, True
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        diff = np.abs(g - w)
        scale = float(np.abs(w).max()) if w.size else 0.0
        worst_abs = max(worst_abs, float(diff.max()) if diff.size else 0.0)
        worst_rel = max(worst_rel, float((diff / (np.abs(w) + 1e-6)).max()) if diff.size else 0.0)
        if bf16:
            ok &= bool((diff <= 3e-2 * scale + 1e-6).all())
        else:
            ok &= bool(np.allclose(g, w, rtol=1e-4, atol=1e-5))
    return {"max_abs": worst_abs, "max_rel": worst_rel, "ok": ok}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check/correctness.json"),
                   help="the JSON file to write")
    args = p.parse_args(argv)
    b, t, h = SHAPE
    xs = jax.random.normal(jax.random.PRNGKey(1), (b, t, h))
    lengths = jax.random.randint(jax.random.PRNGKey(2), (b,), 0, t + 1)
    platform = jax.devices()[0].platform
    rows, failed = [], 0
    with jax.default_matmul_precision("highest"):
        for name, make in (("lstm", jaxrnn.LSTM), ("gru", jaxrnn.GRU)):
            for dtype in (None, jnp.bfloat16):
                cell = make(h, compute_dtype=dtype)
                params = cell.init(jax.random.PRNGKey(0), h)
                reference = run(cell, "in_loop", params, xs, lengths)
                fused = None
                for strategy in ("hoisted", "fused", "auto", "cudnn"):
                    got = run(cell, strategy, params, xs, lengths)
                    fused = got if strategy == "fused" else fused
                    ran = resolve_strategy(strategy, cell, None, xs.shape,
                                           platform="cuda" if platform == "gpu" else platform)
                    row = {"cell": name, "dtype": "bfloat16" if dtype else "float32",
                           "strategy": strategy, "ran": ran, "against": "in_loop",
                           **compare(got, reference, dtype is not None)}
                    rows.append(row)
                    if strategy == "cudnn":
                        rows.append({**row, "against": "fused",
                                     **compare(got, fused, dtype is not None)})
    failed = sum(not r["ok"] for r in rows)
    result = {"device": str(jax.devices()[0]), "backend": jax.default_backend(),
              "jax": jax.__version__, "shape_btd": [b, t, h], "rows": rows, "failed": failed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        verdict = "ok" if r["ok"] else "FAIL"
        print(f"{r['cell']:4} {r['dtype']:8} {r['strategy']:7} ({r['ran']:7}) vs "
              f"{r['against']:7} max_abs {r['max_abs']:.2e} max_rel {r['max_rel']:.2e} {verdict}")
    print(f"{len(rows) - failed}/{len(rows)} within tolerance; wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
