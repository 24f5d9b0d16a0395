"""experiments/seq_classify.py, time_series.py, sentiment.py and their data modules.

Each script: --help, a --smoke run in a subprocess (results.json with the named keys,
its plots), clear errors for bad arguments and for data that cannot be had. Plus the pieces they
rest on: jaxrnn.data.series (gap filling, windows, baselines) and jaxrnn.data.imdb (reader,
training-split vocabulary, padding with lengths), and the sentiment model's indifference to
padding (the lengths-aware scan never runs over pad tokens).
"""

import argparse
import importlib.util
import io
import os
import pathlib
import resource
import subprocess
import sys
import tarfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from experiment_outputs import check_run_outputs

from jaxrnn.data import DataError
from jaxrnn.data import images as images_module
from jaxrnn.data.imdb import (
    PAD,
    UNK,
    build_vocabulary,
    encode,
    fetch_imdb,
    make_text_classification,
    read_imdb,
    synthetic_reviews,
    tokenize,
)
from jaxrnn.data.series import (
    fill_gaps,
    load_series,
    naive_forecast,
    seasonal_naive_forecast,
    sliding_windows,
)

# Subprocess runs of whole scripts: skipped by `pytest -m 'not slow'`, run by .ci/run.
pytestmark = pytest.mark.slow

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def seq_classify():
    return load_script("seq_classify")


@pytest.fixture(scope="module")
def time_series():
    return load_script("time_series")


@pytest.fixture(scope="module")
def sentiment():
    return load_script("sentiment")


# ------------------------------------------------------------------------------------ --help


@pytest.mark.parametrize("name, words", [
    ("seq_classify", ["--dataset", "--smoke", "--out", "digits", "mnist", "fashion_mnist",
                      "results.json", "test_accuracy", "0.97", "0.985"]),
    ("time_series", ["--series", "--horizon", "--input-len", "--smoke", "co2", "sunspots",
                     "seasonal naive", "forecast.png", "naive_mae", "seasonal_naive_mae"]),
    ("sentiment", ["--data-dir", "--smoke", "--max-len", "--pool", "aclImdb_v1.tar.gz",
                   "7c2ac02c03563afcf9b574c7e56c153a", "training split only", "test_accuracy",
                   "87%"]),
])
def test_help_documents_the_script(name, words, capsys):
    with pytest.raises(SystemExit) as exc:
        load_script(name).main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in words:
        assert word in text, word


# ------------------------------------------------------------------------- smoke runs


def run_smoke(name, out, *extra):
    """Runs ``name --smoke`` in a fresh interpreter, checks the harness's outputs; returns
    (results.json, stdout).

    Its CPU and wall time are printed (the 30-second budget is a benchmark, not a test).
    """
    env = {**os.environ, "JAXRNN_DATA": str(out / "cache"), "JAX_PLATFORMS": "cpu"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), "--smoke", "--no-progress",
         "--out", str(out / "run"), *extra],
        capture_output=True, text=True, env=env, timeout=180,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # A timing is a benchmark, not an assertion: printed for `pytest -s`, never checked.
    print(f"{name} --smoke: {cpu:.1f} s of CPU, {wall:.1f} s wall")
    _, results = check_run_outputs(out / "run", name, proc.stdout)
    return results, proc.stdout


def assert_files(folder, names):
    for name in names:
        assert (folder / name).stat().st_size > 0, name


def test_seq_classify_smoke(tmp_path):
    results, stdout = run_smoke("seq_classify", tmp_path)
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert results["test_accuracy"] > 0.2  # chance is 0.1, even after two tiny epochs
    assert results["dataset"] == "digits" and results["smoke"] is True
    assert "test accuracy" in stdout
    assert_files(tmp_path / "run", ["accuracy.png", "loss.png", "confusion.png",
                                    "metrics.jsonl", "config.json"])


def test_time_series_smoke(tmp_path):
    results, stdout = run_smoke("time_series", tmp_path)
    for key in ("mae", "rmse", "naive_mae", "seasonal_naive_mae"):
        assert np.isfinite(results[key]) and results[key] > 0, key
    assert results["rmse"] >= results["mae"]
    assert len(results["mae_by_step"]) == results["horizon"]
    # The baselines are computed on the test windows: recompute them independently.
    series = load_series(results["series"])
    _, targets, origins = sliding_windows(series.values, results["input_len"],
                                          results["horizon"], start=round(0.8 * series.values.size))
    assert targets.shape[0] == results["test_windows"]
    naive = np.abs(np.repeat(series.values[origins - 1][:, None], results["horizon"], 1) - targets)
    assert results["naive_mae"] == pytest.approx(float(naive.mean()), rel=1e-5)
    assert "naive MAE" in stdout and "seasonal naive MAE" in stdout
    assert_files(tmp_path / "run", ["forecast.png", "loss.png", "metrics.jsonl"])


def test_sentiment_smoke(tmp_path):
    results, stdout = run_smoke("sentiment", tmp_path)
    assert results["dataset"] == "synthetic"
    assert results["test_accuracy"] > 0.6  # the sentiment words decide; chance is 0.5
    assert "test accuracy" in stdout
    assert_files(tmp_path / "run", ["accuracy.png", "loss.png", "accuracy_by_length.png",
                                    "metrics.jsonl"])
    assert not (tmp_path / "cache").exists()  # no download


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name, argv, message", [
    ("seq_classify", ["--epochs", "0"], "--epochs: must be a positive integer; got 0"),
    ("seq_classify", ["--dataset", "cifar"], "invalid choice: 'cifar'"),
    ("seq_classify", ["--valid-fraction", "0.7"], "must lie in [0, 0.5); got 0.7"),
    ("time_series", ["--horizon", "0"], "--horizon: must be a positive integer; got 0"),
    ("time_series", ["--series", "nile"], "invalid choice: 'nile'"),
    ("sentiment", ["--smoke", "--dataset", "imdb"], "--smoke runs on generated data"),
    ("sentiment", ["--max-vocab", "2"], "--max-vocab must be >= 3"),
    ("sentiment", ["--dropout", "1.0"], "--dropout: must lie in [0, 1); got 1.0"),
])
def test_bad_arguments_exit_2_with_a_message(name, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_script(name).main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_time_series_window_too_long_for_series(time_series, tmp_path, capsys):
    code = time_series.main(["--series", "sunspots", "--input-len", "300", "--out",
                             str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "--input-len 300" in err and "do not fit the sunspots series (309 steps" in err


def test_sentiment_without_internet_says_what_to_do(sentiment, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXRNN_DATA", str(tmp_path / "cache"))
    missing = (tmp_path / "nowhere" / "aclImdb_v1.tar.gz").as_uri()
    code = sentiment.main(["--url", missing, "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"could not download {missing}" in err
    assert "--data-dir" in err and "--smoke" in err
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))  # nothing half-written cached


def test_seq_classify_mnist_download_failure_exits_2(seq_classify, tmp_path, monkeypatch,
                                                     capsys):
    # The real path (load_mnist -> fetch), with mirrors that cannot answer.
    _, md5s = images_module.MNIST_SOURCES["mnist"]
    dead = (tmp_path / "mirror").as_uri() + "/"
    monkeypatch.setitem(images_module.MNIST_SOURCES, "mnist", ((dead,), md5s))
    monkeypatch.setenv("JAXRNN_DATA", str(tmp_path / "cache"))
    code = seq_classify.main(["--dataset", "mnist", "--out", str(tmp_path / "run"),
                              "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "every mirror failed for train-images-idx3-ubyte.gz" in err
    assert "--data-dir" in err


def test_seq_classify_corrupt_mnist_in_data_dir_exits_2(seq_classify, tmp_path, capsys):
    for name in images_module._MNIST_FILES:
        (tmp_path / name).write_bytes(b"not an idx file")
    code = seq_classify.main(["--dataset", "fashion_mnist", "--data-dir", str(tmp_path),
                              "--out", str(tmp_path / "run")])
    assert code == 2
    assert "checksum mismatch" in capsys.readouterr().err


# ------------------------------------------------------------- padding never reaches the LSTM


def test_sentiment_logits_ignore_padding(sentiment):
    # Rows 2-3 repeat rows 0-1 with garbage ids (not pad) past each length: same logits.
    ids = np.array([[3, 4, 5, 0, 0, 0, 0], [6, 7, 8, 9, 10, 0, 0],
                    [3, 4, 5, 9, 2, 7, 1], [6, 7, 8, 9, 10, 2, 9]], np.int32)
    lengths = jnp.asarray([3, 5, 3, 5], jnp.int32)
    for pool in ("max", "mean", "last"):
        args = argparse.Namespace(hidden_size=5, num_layers=2, dropout=0.0,
                                  recurrent_dropout=0.0, embed_size=4, pool=pool)
        init, apply = sentiment.build_model(args, vocab_size=11)
        params = init(jax.random.PRNGKey(0))
        logits = np.asarray(jax.jit(apply)(params, jnp.asarray(ids), lengths))
        np.testing.assert_allclose(logits[2:], logits[:2], atol=1e-6, err_msg=pool)
        assert not np.allclose(logits[0], logits[1]), pool


def test_length_sorted_batches_cover_each_example_once(sentiment):
    lengths = np.random.default_rng(0).integers(1, 100, 1000).astype(np.int32)
    batches = sentiment.length_sorted_batches(lengths, 16, seed=3, epoch=2)
    assert batches.shape == (62, 16)
    assert len(np.unique(batches)) == batches.size
    again = sentiment.length_sorted_batches(lengths, 16, seed=3, epoch=2)
    np.testing.assert_array_equal(batches, again)
    spread = (lengths[batches].max(1) - lengths[batches].min(1)).mean()
    assert spread < 10  # similar lengths in a batch (random batches: ~90)


# ------------------------------------------------------------------------- jaxrnn.data.series


def test_fill_gaps_interpolates_linearly():
    values = np.array([np.nan, 1.0, np.nan, np.nan, 4.0, np.nan])
    filled, mask = fill_gaps(values)
    np.testing.assert_allclose(filled, [1.0, 1.0, 2.0, 3.0, 4.0, 4.0])
    np.testing.assert_array_equal(mask, np.isnan(values))
    with pytest.raises(ValueError, match="all 2 values are NaN"):
        fill_gaps(np.array([np.nan, np.nan]))
    with pytest.raises(ValueError, match=r"values has shape \(2, 2\)"):
        fill_gaps(np.zeros((2, 2)))


def test_real_series_load_without_gaps():
    co2 = load_series("co2")
    assert co2.values.shape == (2284,) and co2.period == 52 and int(co2.filled.sum()) == 59
    assert not np.isnan(co2.values).any() and 310 < co2.values.min() < co2.values.max() < 380
    assert co2.times[0] == pytest.approx(1958.24, abs=0.01)
    sunspots = load_series("sunspots")
    assert sunspots.values.shape == (309,) and sunspots.period == 11
    with pytest.raises(ValueError, match="unknown name='airline'; valid names: co2, sunspots"):
        load_series("airline")


def test_sliding_windows_and_baselines():
    values = np.arange(20, dtype=np.float32) * 10
    inputs, targets, origins = sliding_windows(values, 4, 3, start=10, stop=16)
    np.testing.assert_array_equal(origins, [10, 11, 12, 13])
    np.testing.assert_array_equal(inputs[0], [60, 70, 80, 90])
    np.testing.assert_array_equal(targets[-1], [130, 140, 150])
    np.testing.assert_array_equal(naive_forecast(values, origins, 3)[1], [100, 100, 100])
    # period 2, horizon 5 from origin 10: indices 8, 9, 8, 9, 8 (Hyndman & Athanasopoulos 5.2).
    np.testing.assert_array_equal(
        seasonal_naive_forecast(values, np.array([10]), 5, 2)[0], [80, 90, 80, 90, 80])
    with pytest.raises(ValueError, match="no window of input_len=4 and horizon=7"):
        sliding_windows(values, 4, 7, start=15)
    with pytest.raises(ValueError, match="horizon must be a positive int; got 0"):
        sliding_windows(values, 4, 0)
    with pytest.raises(ValueError, match=r"must lie in \[3, 18\]"):
        seasonal_naive_forecast(values, np.array([2]), 2, 3)


# --------------------------------------------------------------------------- jaxrnn.data.imdb


def test_tokenize_vocabulary_from_training_only_and_encode():
    assert tokenize("A <br /><br />GREAT film, isn't it? 10/10") == [
        "a", "great", "film", "isn't", "it", "10", "10"]
    train_tokens = [["good", "film", "good"], ["bad", "film"], ["film"]]
    vocab = build_vocabulary(train_tokens, max_size=4)
    assert vocab.words == (PAD, UNK, "film", "good")
    ids, lengths = encode([["good", "unseen", "film"], [], ["film"] * 9], vocab, 4)
    np.testing.assert_array_equal(ids, [[3, 1, 2, 0], [1, 0, 0, 0], [2, 2, 2, 2]])
    np.testing.assert_array_equal(lengths, [3, 1, 4])
    head, _ = encode([["good", "film", "x", "x", "x"]], vocab, 2, truncate="head")
    tail, _ = encode([["good", "film", "x", "x", "good"]], vocab, 2, truncate="tail")
    np.testing.assert_array_equal(head, [[3, 2]])
    np.testing.assert_array_equal(tail, [[1, 3]])
    with pytest.raises(ValueError, match="truncate='middle'; expected 'head' or 'tail'"):
        encode([["a"]], vocab, 2, truncate="middle")
    with pytest.raises(ValueError, match="max_size must be an int >= 3; got 2"):
        build_vocabulary(train_tokens, 2)


def test_make_text_classification_never_looks_at_test_words():
    train = synthetic_reviews(50, 1, seed=0)[0]
    test = train._replace(texts=["zebra quagga " * 3] * 50)
    data = make_text_classification(train, test, max_vocab=1000, max_len=16)
    assert "zebra" not in data.vocab and "quagga" not in data.vocab
    assert set(np.unique(data.test_ids)) <= {0, 1}
    assert data.train_ids.dtype == np.int32 and data.train_lengths.min() >= 1


def _write_reviews(root):
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for number in range(2):
                (folder / f"{number}_{8 if label == 'pos' else 2}.txt").write_text(
                    f"{split} {label} review {number}<br />", encoding="utf-8")
    (root / "aclImdb" / "train" / "unsup").mkdir()
    (root / "aclImdb" / "train" / "unsup" / "0_0.txt").write_text("unlabelled")


def test_read_imdb_from_folder_and_archive(tmp_path):
    _write_reviews(tmp_path / "tree")
    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "aclImdb", arcname="aclImdb")
    for source in (tmp_path / "tree", tmp_path / "tree" / "aclImdb", archive):
        train, test = read_imdb(source, expected_per_split=4)
        assert train.texts[0] == "train neg review 0<br />" and len(train.texts) == 4
        np.testing.assert_array_equal(train.labels, [0, 0, 1, 1])
        assert test.texts[-1] == "test pos review 1<br />"
    with pytest.raises(DataError, match="holds 4 training and 4 test reviews; expected 25000"):
        read_imdb(archive)
    # A folder with the extracted reviews is used as is (no md5: it is not the archive).
    assert fetch_imdb(data_dir=tmp_path / "tree") == tmp_path / "tree"


def test_fetch_imdb_checks_a_local_archive(tmp_path):
    (tmp_path / "aclImdb_v1.tar.gz").write_bytes(b"truncated")
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_imdb(data_dir=tmp_path)


def test_synthetic_reviews_are_deterministic_and_labelled_by_their_words():
    (train, _), (again, _) = synthetic_reviews(20, 5, seed=4), synthetic_reviews(20, 5, seed=4)
    assert train.texts == again.texts
    for text, label in zip(train.texts, train.labels, strict=True):
        words = text.split()
        positive = sum(w in ("great", "excellent", "wonderful", "superb", "loved", "brilliant",
                             "moving", "delightful", "masterpiece", "enjoyable") for w in words)
        assert (positive >= 2) == bool(label)
    with pytest.raises(ValueError, match="num_train must be a positive int; got 0"):
        synthetic_reviews(0, 5)


def test_read_imdb_reports_unreadable_and_incomplete_archives(tmp_path):
    bad = tmp_path / "aclImdb_v1.tar.gz"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="read_imdb: cannot read .*aclImdb_v1.tar.gz"):
        read_imdb(bad)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("aclImdb/train/pos/12_9.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"fine"))
    partial = tmp_path / "partial.tar.gz"
    partial.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="holds 1 training and 0 test reviews; expected at least 1"):
        read_imdb(partial, expected_per_split=None)


def test_fetch_imdb_data_dir_without_a_copy_is_an_error_unless_download(tmp_path):
    with pytest.raises(DataError, match=r"data_dir .*nowhere does not exist"):
        fetch_imdb(data_dir=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds neither aclImdb_v1.tar.gz nor an extracted"):
        fetch_imdb(data_dir=tmp_path / "empty")
    with pytest.raises(DataError, match="could not download"):
        fetch_imdb(data_dir=tmp_path / "empty", download=True, cache_dir=tmp_path / "cache",
                   url=(tmp_path / "absent.tar.gz").as_uri())


def test_read_imdb_refuses_an_oversized_member(tmp_path):
    import io

    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = bytes(2 << 20)  # 2 MiB of zeros: a few kB compressed
        info = tarfile.TarInfo("aclImdb/train/pos/0_10.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match=r"member aclImdb/train/pos/0_10.txt is 2097152 bytes; "
                                        r"a review is at most 1048576"):
        read_imdb(archive)
