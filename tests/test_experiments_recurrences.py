"""experiments/state_tracking.py, recall.py and token_tasks.py: the task generators against
independent numpy answers, the state-size mapping, --help and bad flags, and a --smoke run of
each script in a subprocess (the output files and the results.json schema)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import token_tasks as tt

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


# ---------------------------------------------------------------------------- generators


def test_parity_targets_are_the_running_parity():
    task = tt.state_tracking_task("parity")
    tokens, targets, weights = map(np.asarray, task.sample(jax.random.PRNGKey(0), 32))
    assert tokens.shape == targets.shape == weights.shape == (32, 40)
    assert set(np.unique(tokens)) == {0, 1}
    np.testing.assert_array_equal(targets, np.cumsum(tokens, axis=1) % 2)
    # the loss counts the words of lengths 3..40 (steps 3..40, 1-based)
    np.testing.assert_array_equal(weights[0], (np.arange(1, 41) >= 3).astype(np.float32))
    assert task.chance == 0.5


def test_modular_arithmetic_targets_are_running_sums_mod_5():
    task = tt.state_tracking_task("modular_arithmetic")
    tokens, targets, _ = map(np.asarray, task.sample(jax.random.PRNGKey(1), 16))
    assert tokens.min() >= 0 and tokens.max() <= 4
    np.testing.assert_array_equal(targets, np.cumsum(tokens, axis=1) % 5)
    assert task.chance == pytest.approx(0.2)


def test_s3_targets_compose_the_permutations_in_order():
    perms, table = tt.permutation_group(3)
    assert perms.shape == (6, 3)
    np.testing.assert_array_equal(perms[0], [0, 1, 2])
    task = tt.state_tracking_task("s3")
    tokens, targets, _ = map(np.asarray, task.sample(jax.random.PRNGKey(2), 8))
    for word, answers in zip(tokens, targets, strict=True):
        arrangement = np.arange(3)  # apply the word's permutations one after the other
        for g, answer in zip(word, answers, strict=True):
            arrangement = perms[g][arrangement]
            np.testing.assert_array_equal(perms[answer], arrangement)
    # non-abelian: some pair of elements does not commute
    assert np.any(table != table.T)
    assert task.chance == pytest.approx(1 / 6)


def test_test_words_answer_every_prefix():
    task = tt.state_tracking_task("parity")
    tokens, targets = map(np.asarray, tt.word_problem_test_set(task, jax.random.PRNGKey(3), 4,
                                                               256))
    assert tokens.shape == (4, 256)
    np.testing.assert_array_equal(targets, np.cumsum(tokens, axis=1) % 2)


def test_mqar_queries_are_answerable_from_the_context():
    pairs, keys, values = 5, 8, 6
    task = tt.mqar_task(pairs, keys, values)
    tokens, targets, weights = map(np.asarray, task.sample(jax.random.PRNGKey(4), 16))
    assert tokens.shape == (16, 3 * pairs)
    assert task.vocab_size == keys + values and task.num_classes == values
    for row, target, weight in zip(tokens, targets, weights, strict=True):
        context = row[: 2 * pairs]
        assert np.all(context[0::2] < keys) and np.all(context[1::2] >= keys)
        assert len(set(context[0::2])) == pairs  # distinct keys
        memory = dict(zip(context[0::2], context[1::2] - keys, strict=True))
        queries = row[2 * pairs :]
        assert sorted(queries) == sorted(context[0::2])  # every key asked once
        np.testing.assert_array_equal(target[2 * pairs :], [memory[q] for q in queries])
        np.testing.assert_array_equal(weight, np.arange(3 * pairs) >= 2 * pairs)


def test_selective_copying_targets_are_the_coloured_tokens_in_order():
    task = tt.selective_copying_task(body_length=12, num_tokens=4, num_colours=5)
    tokens, targets, weights = map(np.asarray, task.sample(jax.random.PRNGKey(5), 16))
    assert tokens.shape == (16, 16)
    for row, target, weight in zip(tokens, targets, weights, strict=True):
        body = row[:12]
        coloured = body[body != 0]
        assert len(coloured) == 4 and coloured.max() <= 5
        np.testing.assert_array_equal(row[12:], 6)  # the recall markers
        np.testing.assert_array_equal(target[12:], coloured - 1)
        np.testing.assert_array_equal(weight, np.arange(16) >= 12)


@pytest.mark.parametrize("call, message", [
    (lambda: tt.mqar_task(9, 8, 4), "num_pairs=9 > num_keys=8"),
    (lambda: tt.selective_copying_task(3, 4, 2), "num_tokens=4 > body_length=3"),
    (lambda: tt.state_tracking_task("s5"), "name='s5'"),
    (lambda: tt.permutation_group(0), "n=0"),
])
def test_task_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------- state sizes


def test_state_size_mapping_per_cell():
    import recall

    cell, hidden, knob, floats = recall.sized_cell("mamba", 512, 32, 32)
    assert (hidden, knob, floats) == (32, "state_size=16", 512)  # H x N
    assert (cell.hidden_size, cell.state_size) == (32, 16)
    _, hidden, knob, floats = recall.sized_cell("deltanet", 512, 32, 32)
    assert (hidden, knob, floats) == (32, "key_size=15", 32 + 32 * 15)  # h + S [d_v, d_k]
    _, hidden, knob, floats = recall.sized_cell("np", 512, 32, 32)
    assert (hidden, knob, floats) == (256, "hidden_size=256", 512)  # h and c
    _, hidden, _, floats = recall.sized_cell("rglru", 100, 32, 32)
    assert (hidden, floats) == (100, 100)
    assert recall.sized_cell("deltanet", 40, 32, 32) is None  # h alone is 32, S at least 32
    lru = recall.sized_cell("lru", 64, 32, 32)  # complex state: two floats an entry
    assert lru[2] == "state_size=32" and lru[3] == 64


# --------------------------------------------------------------------------- the scripts


@pytest.mark.parametrize("script, argv, message", [
    ("state_tracking", ["--task", "dyck"], "unknown task"),
    ("state_tracking", ["--variants", "nosuchcell"], "unknown variant 'nosuchcell'"),
    ("recall", ["--state-sizes", "big"], "--state-sizes"),
    ("recall", ["--pairs", "20", "--keys", "8"], "--pairs 20 > --keys 8"),
])
def test_bad_flags_exit_2_with_a_message(script, argv, message, tmp_path, capsys):
    module = __import__(script)
    with pytest.raises(SystemExit) as exc:
        module.main([*argv, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def run_smoke(script, out, *extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{script}.py"), "--smoke", "--no-progress",
         "--out", str(out), *extra],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), proc.stdout


def check_schema(result, variants, columns, column_key):
    assert list(result["results"]) == variants
    assert result[column_key] == columns
    assert 0.0 < result["chance"] < 1.0
    for record in result["results"].values():
        assert set(record["accuracy"]) == set(columns)
        for column in columns:
            assert 0.0 <= record["accuracy"][column] <= 1.0
            assert record["accuracy"][column] == pytest.approx(
                np.mean(record["per_seed"][column]))
        assert record["wall_s"] > 0


@pytest.mark.slow
def test_state_tracking_smoke(tmp_path):
    out = tmp_path / "st"
    result, stdout = run_smoke("state_tracking", out, "--variants", "np,mamba_neg")
    assert result["task"] == "parity" and result["chance"] == 0.5
    check_schema(result, ["np", "mamba_neg"], ["40-64", "64-128", "128-256"], "buckets")
    for record in result["results"].values():
        assert all(len(v) == 2 for v in record["per_seed"].values())  # 2 seeds in --smoke
    for name in ("config.json", "results.md", "heatmap.png", "accuracy_vs_length.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "results.md").read_text()
    assert "| np |" in table and "parity 128-256" in table
    assert "output folder" in stdout


@pytest.mark.slow
def test_recall_smoke(tmp_path):
    out = tmp_path / "rc"
    result, _ = run_smoke("recall", out, "--task", "mqar", "--variants", "deltanet")
    assert result["task"] == "mqar"
    check_schema(result, ["deltanet"], ["16", "64"], "state_sizes")
    record = result["results"]["deltanet"]
    assert record["knob"] == {"16": "key_size=3", "64": "key_size=15"}  # d_v = 4 in --smoke
    assert all(record["state_floats"][s] <= int(s) for s in ("16", "64"))
    for name in ("config.json", "results.md", "heatmap.png", "accuracy_vs_state_size.png"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.parametrize("token_shift", [False, True])
def test_model_is_causal_with_and_without_the_token_shift(token_shift):
    import harness

    cell = harness.make_cell("np", 6)
    params = tt.init_model(cell, jax.random.PRNGKey(0), 5, 4, 3, token_shift)
    assert params["cell"]["w_ih"].shape[1] == (8 if token_shift else 4)
    tokens = np.array([[0, 1, 2, 3, 4, 0, 1, 2]])
    changed = tokens.copy()
    changed[0, 5] = 3
    with jax.numpy_rank_promotion("allow"):
        a = np.asarray(tt.logits(cell, params, tokens, token_shift=token_shift))
        b = np.asarray(tt.logits(cell, params, changed, token_shift=token_shift))
    np.testing.assert_array_equal(a[:, :5], b[:, :5])  # the past does not see the future
    assert np.abs(a[:, 5] - b[:, 5]).max() > 0
