"""The benchmark scripts run: tiny shapes and data, no timings asserted (timings are benchmarks)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("impl", ["torch:bf16", "jaxrnn:layer-bf16"])
def test_rnn_speed_reduced_precision_workers(impl):
    rnn_speed = _module("rnn_speed")
    row = rnn_speed.run_worker(impl, "lstm", (2, 5, 8), steps=2, warmup=0)
    assert row["train"]["median_s"] > 0 and row["infer"]["median_s"] > 0
    if impl.startswith("torch"):
        assert row["output_dtype"] == "torch.bfloat16"  # autocast really took the LSTM
    else:
        assert row["resolves_to"] == "fused"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_ptb_torch_trains_on_a_tiny_corpus(tmp_path, dtype):
    words = " ".join(f"w{i % 37}" for i in range(60))
    (tmp_path / "ptb.train.txt").write_text((words + "\n") * 12)
    out = tmp_path / "torch.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ptb_torch.py"), "--data-dir", str(tmp_path),
         "--max-steps", "3", "--warmup-steps", "1", "--compute-dtype", dtype, "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["compute_dtype"] == dtype and res["timed_steps"] == 2
    assert 1.0 < res["train_ppl"] < 1e4


def test_profile_step_lists_the_ops_of_a_tiny_step(tmp_path):
    profile_step = _module("profile_step")
    code = profile_step.main(["--model", "layer", "--shape", "2x5x8", "--steps", "1",
                              "--warmup", "0", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "profile.json").read_text())
    assert report["meta"]["step_ms"] > 0 and report["meta"]["minor_faults_per_step"] >= 0
    ops = report["ops"]
    assert ops and all(op["ms_per_step"] >= 0 for op in ops)
    assert any("while" in op["op"] for op in ops)  # the time loop itself was seen
    assert "| op (compiled HLO) |" in (tmp_path / "profile.md").read_text()


def test_rnn_speed_parallel_scan_worker_and_unavailable_pairs():
    rnn_speed = _module("rnn_speed")
    row = rnn_speed.run_worker("jaxrnn:assoc", "minlstm", (2, 6, 8), steps=2, warmup=0)
    assert row["train"]["median_s"] > 0
    assert rnn_speed.train_flops("lstm", (2, 6, 8)) == 3 * 2 * 2 * 6 * (8 + 8) * 4 * 8
    for impl, cell in (("torch", "mingru"), ("jaxrnn:assoc", "lstm")):
        with pytest.raises(rnn_speed.NotAvailable):
            rnn_speed.run_worker(impl, cell, (2, 6, 8), steps=2, warmup=0)


def test_step_matmul_times_both_products_for_jax_and_torch(tmp_path):
    step_matmul = _module("step_matmul")
    code = step_matmul.main(["--shapes", "2x8", "--threads", "1", "--steps", "3",
                             "--repeats", "2", "--out", str(tmp_path)])
    assert code == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    got = {(r["impl"], r["kind"], r["m"], r["k"], r["n"]) for r in rows}
    assert got == {(impl, kind, *dims) for impl in ("jax", "torch")
                   for kind, dims in (("forward", (2, 8, 32)), ("backward", (2, 32, 8)))}
    assert all(r["us_per_step"] > 0 and r["threads"] == 1 for r in rows)
    assert "| 2x8 | forward [2,8]x[8,32] | 1 |" in (tmp_path / "results.md").read_text()


def test_gpu_check_script_is_valid_bash_and_its_commands_parse():
    """benchmarks/gpu_check.sh runs only on a GPU machine, often with little time on it: check here
    that its rnn_speed command lines are accepted by rnn_speed's own parser and that the tests
    it selects exist, so that a renamed flag or test cannot waste that time."""
    script = ROOT / "benchmarks" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text().replace("\\\n", " ")
    rnn_speed = _module("rnn_speed")
    commands = [line.split("rnn_speed.py", 1)[1].split("|")[0].split()
                for line in text.splitlines()
                if "benchmarks/rnn_speed.py" in line and not line.lstrip().startswith("#")]
    assert len(commands) == 3  # stages 2, 3 and 4
    for argv in commands:
        argv = [a.replace('"$OUT', "/tmp/x").replace('"', "") for a in argv]
        args = rnn_speed.parse_args(argv)
        assert args.impls and args.shapes
    assert "def test_real_cudnn_equals_the_per_step_cell" in (
        ROOT / "tests" / "test_cudnn.py").read_text()
    # the PTB throughput stage's command line, parsed by ptb_lm's own parser
    ptb_lines = [line.split("experiments/ptb_lm.py", 1)[1].split("|")[0].split()
                 for line in text.splitlines()
                 if "experiments/ptb_lm.py" in line and not line.lstrip().startswith("#")]
    assert len(ptb_lines) == 1
    import ptb_lm

    args = ptb_lm.parse_args([a.replace('"$OUT', "/tmp/x").replace('"', "")
                              for a in ptb_lines[0]])
    assert args.deterministic and args.max_steps == 300
    assert "benchmarks/gpu_correctness.py" in text
