#!/usr/bin/env bash
# The GPU checks as one run of at most ~8 minutes on one H100/H200 (each stage under its own
# timeout, so a slow stage still leaves the others' results). Writes JSON under OUT.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT defaults to $OUT, else runs/gpu_check
#
# Stages:
#   1. correctness (90 s): every strategy against in_loop on the GPU, values and gradients,
#      LSTM and GRU, float32 and bfloat16, and "cudnn" against "fused"
#      (benchmarks/gpu_correctness.py -> correctness.json); the real cuDNN tests of
#      tests/test_cudnn.py (they skip without a GPU) -> pytest.txt;
#   2. speed against torch's cuDNN (200 s): LSTM and GRU, training step and inference, at
#      (20,35,200), (20,35,650), (64,100,256), (256,100,512), float32 and bfloat16
#      (benchmarks/rnn_speed.py -> standard_f32/, standard_bf16/ results.json);
#   3. the long case (8, 4096, 256) (90 s): minGRU / minLSTM under jaxrnn.associative_scan
#      against the sequential LSTM layer and torch (-> long/results.json);
#   4. PTB small training throughput (90 s): experiments/ptb_lm.py, small preset, on the
#      synthetic corpus of the same shapes with a 1,000-word vocabulary (the device machine has
#      no copy of PTB), 300 steps, under --deterministic as kill -9 + --resume needs
#      (-> ptb_small/results.json, tokens_per_sec).
# Then summary.json gathers the numbers of all four.
#
# The machine needs jax with CUDA, and torch with CUDA for the torch rows (rnn_speed reports a
# missing library as n/a). jaxrnn runs from this checkout through PYTHONPATH. A machine without
# internet can take the other packages from a wheelhouse made beforehand, carried in ./wheelhouse:
#   pip download --no-deps -d wheelhouse chex optax flax equinox orbax-checkpoint
set -u
OUT=${1:-${OUT:-runs/gpu_check}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)   # absolute, so that it still names the same folder after the cd below
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/experiments${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # each worker's memory is its own, not 75% of HBM
if [ -d wheelhouse ]; then
  python -m pip install -q --no-index --no-deps wheelhouse/*.whl > "$OUT/pip.txt" 2>&1
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python - > "$OUT/versions.txt" 2>&1 <<'PY'
import importlib
for name in ("jax", "jaxlib", "torch", "flax", "optax", "chex", "equinox", "orbax.checkpoint"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # noqa: BLE001 - reported, not fatal
        print(name, "unavailable:", err)
import jax
print("backend", jax.default_backend(), jax.devices())
PY
cat "$OUT/versions.txt"

echo "== 1. correctness on the GPU"
timeout 60 python benchmarks/gpu_correctness.py --out "$OUT/correctness.json" | tail -3
timeout 60 python -m pytest -q -p no:cacheprovider tests/test_cudnn.py > "$OUT/pytest.txt" 2>&1
echo "pytest exit $?"; tail -3 "$OUT/pytest.txt"

echo "== 2. LSTM and GRU against torch, float32 and bfloat16"
timeout 130 python benchmarks/rnn_speed.py --shapes standard --cells lstm,gru --steps 10 \
  --impls torch,jaxrnn:layer,jaxrnn:cudnn --out "$OUT/standard_f32" | tail -10
timeout 70 python benchmarks/rnn_speed.py --shapes standard --cells lstm,gru --steps 10 \
  --impls torch:bf16,jaxrnn:layer-bf16 --out "$OUT/standard_bf16" | tail -10

echo "== 3. long sequences: minGRU / minLSTM under associative_scan against the LSTM"
timeout 90 python benchmarks/rnn_speed.py --shapes long --cells lstm,mingru,minlstm --steps 10 \
  --impls torch,jaxrnn:layer,jaxrnn:assoc --out "$OUT/long" | tail -8

echo "== 4. PTB small training throughput"
timeout 90 python experiments/ptb_lm.py --preset small --dataset synthetic --max-steps 300 \
  --no-progress --deterministic --out "$OUT/ptb_small" | tail -4

python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(path):
    try:
        return json.loads((out / path).read_text())
    except (OSError, ValueError) as err:
        return {"missing": str(err)}
summary = {name: load(path) for name, path in [
    ("correctness", "correctness.json"), ("standard_f32", "standard_f32/results.json"),
    ("standard_bf16", "standard_bf16/results.json"), ("long", "long/results.json"),
    ("ptb_small", "ptb_small/results.json")]}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print("wrote", out / "summary.json")
PY
echo "done: $OUT"
