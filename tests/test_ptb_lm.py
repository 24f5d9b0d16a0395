"""experiments/ptb_lm.py end to end on small data: outputs, bad data, and kill -9 + --resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Subprocess runs of whole scripts: skipped by `pytest -m 'not slow'`, run by .ci/run.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "ptb_lm.py"
TIMINGS = {"tokens_per_sec", "wall_s", "final_eval_s"}
SMOKE = ["--preset", "smoke", "--dataset", "synthetic", "--no-progress"]


def _run(*args, check=True, env=None):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _lines(out: Path):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMINGS} for x in lines]


def _results(out: Path):
    res = json.loads((out / "results.json").read_text())
    return {k: v for k, v in res.items() if k not in TIMINGS}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    proc = _run(*SMOKE, "--out", str(out), "--ckpt-every", "40")
    return out, proc, None


def test_smoke_outputs(reference_run):
    out, proc, _ = reference_run
    for name in ("config.json", "metrics.jsonl", "results.json", "perplexity.png"):
        assert (out / name).exists(), name
    assert any((out / "tensorboard").iterdir())
    res = json.loads((out / "results.json").read_text())
    for key in ("train_ppl", "valid_ppl", "test_ppl", "epochs", "steps", "wall_s",
                "tokens_per_sec"):
        assert key in res, key
    assert res["epochs"] == 3 and res["steps"] == 3 * 149
    # it learns: well below the uniform perplexity (vocab 64), above the entropy floor
    assert res["entropy_floor_ppl"] < res["test_ppl"] < 40
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_line = next(x for x in lines if x["split"] == "train")
    assert {"step", "epoch", "split", "loss", "ppl", "lr", "tokens_per_sec"} <= set(train_line)
    assert [x["epoch"] for x in lines if x["split"] == "valid"] == [1, 2, 3]
    assert "entropy floor" in proc.stdout


def test_kill_9_then_resume_is_bitwise_identical(reference_run, tmp_path):
    ref, _, _ = reference_run
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *SMOKE, "--out", str(out), "--ckpt-every", "40"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    # kill between checkpoints: after the checkpoint at step 120 and a few log lines past it
    while time.monotonic() < deadline and proc.poll() is None:
        ckpts = out / "checkpoints"
        steps = [int(p.name) for p in ckpts.glob("*") if p.name.isdigit()] if out.exists() else []
        if steps and max(steps) >= 120 and metrics.exists() and metrics.read_text().count(
            "\n"
        ) >= 14:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()

    resumed = _run(*SMOKE, "--out", str(out), "--ckpt-every", "40", "--resume")
    assert "resum" in (resumed.stdout + resumed.stderr).lower()
    assert _results(out) == _results(ref)  # incl. params_sha256 and opt_state_sha256
    assert _lines(out) == _lines(ref)  # no duplicated or torn lines


def test_fresh_run_refuses_existing_checkpoints(reference_run):
    out, _, _ = reference_run
    proc = _run(*SMOKE, "--out", str(out), check=False)
    assert proc.returncode != 0
    assert "--resume" in proc.stderr or "resume=True" in proc.stderr


def _write_ptb(folder: Path, valid="a b\nb a\n", test="a a b\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ptb.train.txt").write_text("a b c\nc b a\n" * 50)
    (folder / "ptb.valid.txt").write_text(valid)
    (folder / "ptb.test.txt").write_text(test)
    return folder


@pytest.mark.parametrize(
    "valid, test, message",
    [
        ("", "a a b\n", "ptb.valid.txt"),  # an empty split
        ("a b\n", "a zebra b\n", "zebra"),  # a token outside the training vocabulary
    ],
)
def test_bad_data_gives_exit_code_2(tmp_path, valid, test, message):
    data = _write_ptb(tmp_path / "data", valid, test)
    env = dict(os.environ, JAXRNN_DATA=str(tmp_path / "cache"))
    proc = _run("--preset", "smoke", "--data-dir", str(data), "--out", str(tmp_path / "out"),
                "--no-verify", check=False, env=env)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_checksum_mismatch_gives_exit_code_2(tmp_path):
    data = _write_ptb(tmp_path / "data")
    env = dict(os.environ, JAXRNN_DATA=str(tmp_path / "cache"))
    proc = _run("--preset", "smoke", "--data-dir", str(data), "--out", str(tmp_path / "out"),
                check=False, env=env)
    assert proc.returncode == 2
    assert "ptb.train.txt" in proc.stderr and "Traceback" not in proc.stderr


def test_help_documents_every_flag():
    text = _run("--help").stdout
    for flag in ("--hidden-size", "--num-layers", "--dropout", "--init-scale", "--lr",
                 "--lr-decay", "--decay-after", "--epochs", "--batch-size", "--bptt",
                 "--clip-norm", "--forget-bias", "--tie-weights", "--optimizer", "--preset",
                 "--dataset", "--data-dir", "--out", "--resume", "--max-steps", "--seed",
                 "--ckpt-every", "--eval-batch-size", "--compute-dtype"):
        assert flag in text, flag


def test_bfloat16_compute_trains_and_is_recorded(reference_run, tmp_path):
    """--compute-dtype bfloat16: a short smoke run, finite and close to the float32 run."""
    ref, _, _ = reference_run
    _run(*SMOKE, "--out", str(tmp_path), "--max-steps", "40", "--compute-dtype", "bfloat16")
    assert json.loads((tmp_path / "config.json").read_text())["compute_dtype"] == "bfloat16"
    low = [x for x in _lines(tmp_path) if x["split"] == "train"]
    full = {x["step"]: x for x in _lines(ref) if x["split"] == "train"}
    assert low and all(x["step"] in full for x in low)
    for x in low:  # the same data and init: only matmul rounding differs
        assert x["loss"] != full[x["step"]]["loss"]
        assert abs(x["loss"] - full[x["step"]]["loss"]) < 0.05 * full[x["step"]]["loss"]
