#!/usr/bin/env bash
# The GPU checks in one short run: the measurements that would set a "cuda" entry of
# jaxrnn.tuning.TUNING (benchmarks/STRATEGY.md, "GPU and TPU"). About 8 minutes of wall time on
# an H100/H200, each stage under its own timeout so that a slow stage still leaves the others'
# results.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT defaults to $OUT, else runs/gpu_check
#
# Stages, most important first:
#   1. correctness: the real cuDNN path (tests/test_cudnn.py::test_real_cudnn_*, which skip
#      without a GPU) and the fused / strategy tests, run on the GPU;
#   2. the four LSTM shapes: torch (cuDNN) against jaxrnn's default layer, strategy="cudnn"
#      and strategy="fused" (rnn_speed.py, median of 10 steps each);
#   3. the long case (8, 4096, 256): the sequential LSTM layer against minGRU / minLSTM under
#      jaxrnn.associative_scan, and torch's cuDNN LSTM;
#   4. the GRU at the four shapes, if time is left.
#
# The machine needs jax with CUDA, and torch with CUDA for the torch rows (rnn_speed reports a
# missing library as n/a). jaxrnn runs from this checkout through PYTHONPATH (its core needs only
# jax and numpy). A machine without internet can take the other packages from a wheelhouse
# made beforehand on a machine with one, carried along in ./wheelhouse:
#   pip download --no-deps -d wheelhouse chex optax flax equinox
# Everything is written under OUT: nvidia-smi.txt, versions.txt, pytest.txt, and one rnn_speed
# folder per stage (results.json, results.md, rnn_speed.png).
set -u
OUT=${1:-${OUT:-runs/gpu_check}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)   # absolute, so that it still names the same folder after the cd below
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # each worker's memory is its own, not 75% of HBM
if [ -d wheelhouse ]; then
  python -m pip install -q --no-index --no-deps wheelhouse/*.whl > "$OUT/pip.txt" 2>&1
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python - > "$OUT/versions.txt" 2>&1 <<'EOF'
import importlib
for name in ("jax", "jaxlib", "torch", "flax", "optax", "chex", "equinox"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # noqa: BLE001 - reported, not fatal
        print(name, "unavailable:", err)
import jax
print("backend", jax.default_backend(), jax.devices())
EOF
cat "$OUT/versions.txt"

echo "== 1. correctness on the GPU"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_cudnn.py \
  tests/test_recurrence.py -k "cudnn or fused or strategies" > "$OUT/pytest.txt" 2>&1
echo "pytest exit $?"; tail -3 "$OUT/pytest.txt"

echo "== 2. LSTM, the four shapes"
timeout 200 python benchmarks/rnn_speed.py --shapes standard --cells lstm \
  --impls torch,jaxrnn:layer,jaxrnn:cudnn,jaxrnn:fused --out "$OUT/lstm_standard" \
  | tail -12

echo "== 3. long sequences: LSTM against minGRU / minLSTM under associative_scan"
timeout 150 python benchmarks/rnn_speed.py --shapes long --cells lstm,mingru,minlstm \
  --impls torch,jaxrnn:layer,jaxrnn:assoc --out "$OUT/long" | tail -16

echo "== 4. GRU, the four shapes"
timeout 100 python benchmarks/rnn_speed.py --shapes standard --cells gru \
  --impls torch,jaxrnn:layer --out "$OUT/gru_standard" | tail -10
echo "done: $OUT"
