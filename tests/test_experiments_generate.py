"""experiments/char_textgen.py and seq2seq_attention.py: --help, bad arguments, smoke runs.

The smoke runs are subprocesses (a fresh JAX, as a user would run them). Their budget, "< 30 s
on this CPU", is a benchmark, not an assertion: the child's CPU time is printed (pytest -s).
"""

import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys

import pytest
from experiment_outputs import check_run_outputs

# Subprocess runs of whole scripts: skipped by `pytest -m 'not slow'`, run by .ci/run.
pytestmark = pytest.mark.slow

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def textgen():
    return load("char_textgen")


@pytest.fixture(scope="module")
def seq2seq():
    return load("seq2seq_attention")


def run_smoke(script: str, out: pathlib.Path, *extra: str):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / script), "--smoke", "--no-progress",
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=180, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_run_outputs(out, pathlib.Path(script).stem, proc.stdout)
    return proc.stdout, cpu_s


# --------------------------------------------------------------------------------------------
# --help and bad arguments (in-process, no training).


@pytest.mark.parametrize("name, flags", [
    ("char_textgen", ("--text", "--prompt", "--temperature", "--top-k", "--top-p",
                      "--recurrent-dropout", "--dropout", "--smoke", "--resume", "test_bpc",
                      "pydoc_data.topics", "PSF License", "samples.txt")),
    ("seq2seq_attention", ("--attention", "bahdanau", "luong", "--beam-size", "--smoke",
                           "--translate", "exact_match", "attention.png", "ISO")),
])
def test_help(name, flags, capsys):
    with pytest.raises(SystemExit) as exc:
        load(name).main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in flags:
        assert flag in text, flag


@pytest.mark.parametrize("argv, expected", [
    (["--top-p", "1.5"], "--top-p must lie in (0, 1]; got 1.5"),
    (["--top-k", "0"], "--top-k: must be a positive integer; got 0"),
    (["--temperature", "-1"], "--temperature must be >= 0; got -1.0"),
    (["--recurrent-dropout", "1.0"], "--recurrent-dropout: must lie in [0, 1); got 1.0"),
    (["--prompt", ""], "--prompt must not be empty"),
    (["--text", "/no/such/file.txt"], "--text /no/such/file.txt: no such file"),
    (["--bptt", "0"], "--bptt: must be a positive integer; got 0"),
    (["--prompt", "\u2603 snow"], "--prompt has characters ['\u2603'] that never occur"),
])
def test_textgen_bad_args(textgen, capsys, tmp_path, argv, expected):
    with pytest.raises(SystemExit) as exc:
        textgen.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


def test_textgen_too_short_text(textgen, capsys, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("tiny text " * 20, encoding="utf-8")
    assert textgen.main(["--text", str(short), "--out", str(tmp_path / "run")]) == 2
    assert "a 90/5/5 split needs at least" in capsys.readouterr().err


def test_textgen_bad_encoding(textgen, capsys, tmp_path):
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 1000)
    assert textgen.main(["--text", str(binary), "--out", str(tmp_path / "run")]) == 2
    assert "cannot read it as UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["--beam-size", "0"], "--beam-size must be >= 1; got 0"),
    (["--attention", "luongg"], "invalid choice: 'luongg'"),
    (["--batch-size", "99", "--train-size", "50"], "--batch-size 99 is larger than"),
    (["--translate", "5 mai 1990 \u00e0 midi"], "--translate: characters ['\u00e0']"),
    (["--length-penalty", "-1"], "--length-penalty must be >= 0; got -1.0"),
])
def test_seq2seq_bad_args(seq2seq, capsys, tmp_path, argv, expected):
    with pytest.raises(SystemExit) as exc:
        seq2seq.main([*argv, "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The date data (pure numpy).


def test_dates_are_unambiguous_and_held_out(seq2seq):
    import datetime

    import numpy as np

    rng = np.random.default_rng(0)
    train = seq2seq.draw_dates(rng, 2000)
    held = seq2seq.draw_dates(rng, 500, exclude={t for t, _, _ in train})
    assert not {t for t, _, _ in held} & {t for t, _, _ in train}
    # every format is drawn, and one input string never maps to two dates
    assert {f for _, _, f in train} == set(range(len(seq2seq.FORMATS)))
    seen = {}
    for text, iso, _ in train + held:
        assert seen.setdefault(text, iso) == iso
        datetime.date.fromisoformat(iso)
    d = datetime.date(1987, 3, 5)
    assert seq2seq.render(d, "m/d/Y", 0) == "3/5/1987"
    assert seq2seq.render(d, "dd.mm.Y", 0) == "05.03.1987"
    assert seq2seq.render(d, "the o of B, Y", 2) == "THE 5TH OF MARCH, 1987"
    split = seq2seq.make_split(train[:10], 40)
    assert split.src.shape == (10, 40) and split.tgt_in.shape == (10, seq2seq.TGT_LEN)
    assert seq2seq.decode_target(split.tgt_out[0]) == train[0][1]


def test_ngram_baseline_is_exact_on_a_tiny_text(textgen):
    import numpy as np

    ids = np.array([1, 2, 1, 2, 1, 2, 1], np.int32)
    # after "1" always "2": with alpha -> 0 the bigram model is certain (0 bits)
    assert textgen.NGram(ids, 3, 2).bpc(ids, 1e-9) < 1e-6
    # unigram with alpha 1 over 3 symbols: counts (0, 4, 3) -> p = (1/10, 5/10, 4/10)
    p = {1: 5 / 10, 2: 4 / 10}
    expected = -np.mean([np.log2(p[int(i)]) for i in ids])
    assert textgen.NGram(ids, 3, 1).bpc(ids, 1.0) == pytest.approx(expected)


# --------------------------------------------------------------------------------------------
# Smoke runs (subprocesses).


def test_textgen_smoke(tmp_path):
    out, cpu_s = run_smoke("char_textgen.py", tmp_path, "--top-k", "10", "--top-p", "0.9",
                           "--prompt", "def ")
    print(f"smoke run: {cpu_s:.1f} s of CPU")
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0.5 < results["test_bpc"] < results["baseline_unigram_bpc"] + 0.5
    assert "pydoc_data.topics" in results["source"] and len(results["text_sha256"]) == 64
    assert all(s.startswith("def ") for s in results["samples"].values())
    for name in ("bpc.png", "samples.txt", "metrics.jsonl", "config.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    samples = (tmp_path / "samples.txt").read_text(encoding="utf-8")
    assert samples.count("=== epoch") == 2 and "=== final" in samples
    assert "--- sample after epoch 1" in out and "test bpc" in out and "unigram" in out


@pytest.mark.parametrize("kind", ["bahdanau", "luong"])
def test_seq2seq_smoke(tmp_path, kind):
    extra = ["--attention", kind, "--translate", "July 4, 1976"]
    if kind == "luong":  # the second run only has to show that the other decoder trains
        extra += ["--epochs", "1"]
    out, cpu_s = run_smoke("seq2seq_attention.py", tmp_path, *extra)
    print(f"smoke run: {cpu_s:.1f} s of CPU")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["attention"] == kind
    assert 0.0 <= results["exact_match"] <= 1.0
    assert results["exact_match"] == results["exact_match_beam"]
    assert results["target_exact_match"] == 0.99
    for name in ("attention.png", "loss.png", "metrics.jsonl", "config.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "'July 4, 1976' ->" in out
    assert "test exact match: beam" in out and "(target >= 0.99)" in out
