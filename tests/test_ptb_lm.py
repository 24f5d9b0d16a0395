"""experiments/ptb_lm.py end to end on small data: outputs, bad data, kill -9 + --resume,
sampling a trained run from the command line and from Python."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jaxrnn

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


@pytest.fixture(scope="module")
def ptb_lm():
    """The script as a module, for in-process calls of its parser (no subprocess)."""
    spec = importlib.util.spec_from_file_location("ptb_lm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_outputs(reference_run):
    out, proc, _ = reference_run
    assert proc.stdout.splitlines()[0] == f"output folder: {out}"
    for name in ("config.json", "metrics.jsonl", "results.json", "perplexity.png", "model.json",
                 "vocab.txt"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["script"] == "ptb_lm" and config["preset"] == "smoke"
    assert config["model"]["hidden_size"] == 32 and config["model"]["vocab_size"] == 64
    assert config["environment"]["backend"] and config["resumes"] == []
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


def test_throughput_has_one_definition(reference_run):
    """results.json's tokens_per_sec is the pooled rate of metrics.jsonl's train lines: the
    tokens of the timed updates (all but the first, compiling one) over their time."""
    out, _, _ = reference_run
    tokens_per_step = 8 * 10  # smoke preset: batch 8, bptt 10
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["split"] == "train"]
    steps = [b["step"] - a["step"]
             for a, b in zip([{"step": 0}, *train_lines[:-1]], train_lines, strict=True)]
    steps[0] -= 1  # the first update compiles the train step: not timed
    tokens = [n * tokens_per_step for n in steps]
    seconds = [t / x["tokens_per_sec"] for t, x in zip(tokens, train_lines, strict=True)]
    results = json.loads((out / "results.json").read_text())
    assert results["tokens_per_sec"] == pytest.approx(sum(tokens) / sum(seconds), rel=1e-9)
    assert all("tokens_per_sec" not in x for x in lines if x["split"] != "train")


def test_sample_from_cli_equals_python_and_trains_nothing(reference_run, ptb_lm):
    out, _, _ = reference_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    proc = _run("--out", str(out), "--sample", "12", "--prompt", "w3 w7", "--seed", "3",
                "--temperature", "0.8")
    run = jaxrnn.nn.load_language_model_run(out)
    words = run.sample("w3 w7", 12, seed=3, temperature=0.8)
    assert proc.stdout.splitlines() == [" ".join(words)]
    assert len(words) == 12 and all(w in run.vocab for w in words)
    assert f"the model at step {3 * 149}" in proc.stderr
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing trained, written or cleaned up
    # the restored parameters are the run's final ones, bitwise
    results = json.loads((out / "results.json").read_text())
    assert ptb_lm.tree_digest(run.params) == results["params_sha256"]
    assert run.config["model"] == run.spec and run.step == results["steps"]
    assert run.sample("w3 w7", 12, seed=3, temperature=0.8) == words  # the seed decides
    greedy = run.sample(["w3", "w7"], 12, temperature=0.0)
    assert greedy == run.sample("w3 w7", 12, seed=99, temperature=0.0)


def test_sample_errors_name_the_flag(reference_run, tmp_path, ptb_lm, capsys):
    out, _, _ = reference_run
    code, printed, err = _main(ptb_lm, capsys, "--out", out, "--sample", 5, "--prompt",
                               "w3 zebra")
    assert code == 2 and printed == ""
    assert "--prompt 'w3 zebra'" in err and "['zebra']" in err
    code, _, err = _main(ptb_lm, capsys, "--out", tmp_path, "--sample", 5)
    assert code == 2 and f"--out {tmp_path}" in err and "model.json is missing" in err


@pytest.mark.parametrize("argv, message", [
    (["--hidden-size", "0"], "argument --hidden-size: must be a positive integer; got 0"),
    (["--dropout", "1.5"], "argument --dropout: must lie in [0, 1); got 1.5"),
    (["--ckpt-every", "0"], "argument --ckpt-every: must be a positive integer"),
    (["--lr-decay", "2"], "argument --lr-decay: must lie in (0, 1]; got 2.0"),
    (["--sample", "5", "--temperature", "-1"], "argument --temperature: must be >= 0"),
    (["--smoke", "--preset", "small"], "--smoke is --preset smoke; got --preset small"),
    (["--resume", "--override", "hidden_size=0"],
     "--override --hidden-size=0: must be a positive integer"),
])
def test_cli_errors_name_the_flag(ptb_lm, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        ptb_lm.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_smoke_is_the_smoke_preset(ptb_lm):
    smoke, preset = ptb_lm.parse_args(["--smoke"]), ptb_lm.parse_args(["--preset", "smoke"])
    assert smoke.preset == preset.preset == "smoke"
    assert {k: getattr(smoke, k) for k in ptb_lm.PRESET_FLAGS} == {
        k: getattr(preset, k) for k in ptb_lm.PRESET_FLAGS}
    assert ptb_lm.parse_args(["--smoke", "--hidden-size", "16"]).hidden_size == 16
    assert ptb_lm.parse_args([]).preset == "small" and ptb_lm.parse_args([]).hidden_size == 200
    assert ptb_lm.parse_args([]).out == Path("runs/ptb_lm")


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

    latest = max(int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit())
    resumed = _run(*SMOKE, "--out", str(out), "--ckpt-every", "40", "--resume")
    printed = resumed.stdout.splitlines()
    assert printed[:2] == [f"output folder: {out}", f"resuming from step {latest}"]
    assert not any(line.startswith("epoch") for line in printed[:2])  # before training
    assert _results(out) == _results(ref)  # incl. params_sha256 and opt_state_sha256
    assert _lines(out) == _lines(ref)  # no duplicated or torn lines
    assert json.loads((out / "config.json").read_text())["resumes"][0]["step"] == latest


def _main(ptb_lm, capsys, *argv) -> tuple[int, str, str]:
    """The script's main() in this process (what `python ptb_lm.py ARGV` runs, without the
    interpreter start): (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = ptb_lm.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_fresh_run_refuses_existing_checkpoints(reference_run, ptb_lm, capsys):
    out, _, _ = reference_run
    code, _, err = _main(ptb_lm, capsys, *SMOKE, "--out", out)
    assert code == 2
    assert f"{out} already holds a run" in err and "pass --resume" in err


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
def test_bad_data_gives_exit_code_2(tmp_path, monkeypatch, ptb_lm, capsys, valid, test,
                                    message):
    data = _write_ptb(tmp_path / "data", valid, test)
    monkeypatch.setenv("JAXRNN_DATA", str(tmp_path / "cache"))
    code, _, err = _main(ptb_lm, capsys, "--preset", "smoke", "--data-dir", data, "--out",
                         tmp_path / "out", "--no-verify")
    assert code == 2, err
    assert message in err


def test_checksum_mismatch_gives_exit_code_2(tmp_path, monkeypatch, ptb_lm, capsys):
    data = _write_ptb(tmp_path / "data")
    monkeypatch.setenv("JAXRNN_DATA", str(tmp_path / "cache"))
    code, _, err = _main(ptb_lm, capsys, "--preset", "smoke", "--data-dir", data, "--out",
                         tmp_path / "out")
    assert code == 2
    assert "ptb.train.txt" in err


def test_help_documents_every_flag_with_its_default(ptb_lm, capsys):
    with pytest.raises(SystemExit) as exc:
        ptb_lm.parse_args(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--hidden-size", "--num-layers", "--dropout", "--init-scale", "--lr",
                 "--lr-decay", "--decay-after", "--epochs", "--batch-size", "--bptt",
                 "--clip-norm", "--forget-bias", "--tie-weights", "--optimizer", "--preset",
                 "--dataset", "--data-dir", "--out", "--resume", "--max-steps", "--seed",
                 "--ckpt-every", "--eval-batch-size", "--compute-dtype", "--smoke",
                 "--no-progress", "--override", "--sample", "--prompt", "--temperature",
                 "--top-k", "--devices", "tokens_per_sec"):
        assert flag in text, flag
    for default in ("(default: runs/ptb_lm)", "(default: 500)", "(default: small)",
                    "(default by preset: small 200, medium 650, large 1500, smoke 32)",
                    "(default: 1.0)", "(default: ptb)"):
        assert default in text, default


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
