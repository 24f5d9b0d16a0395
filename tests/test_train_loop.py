"""Tests for jaxrnn.train.loop: interrupted + resumed runs equal uninterrupted ones bitwise.

The model is a tiny tanh RNN language model with dropout, trained with truncated BPTT on
a random token stream: the carry crosses windows, the key matters, and the learning rate
decays per epoch, so any state the loop failed to restore would show up in the result.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn.train import (
    TIMING_KEYS,
    Checkpointer,
    NonFiniteLossError,
    TrainState,
    batchify,
    epoch_decay,
    evaluate,
    get_window,
    make_eval_step,
    make_optimizer,
    make_train_step,
    num_windows,
    plot_curves,
    run_training,
)

VOCAB, HIDDEN, BATCH, BPTT = 7, 5, 2, 3
STREAM = batchify(np.random.default_rng(0).integers(0, VOCAB, size=48).astype(np.int32), BATCH)
STEPS = num_windows(STREAM, BPTT)  # (24 - 1) // 3 = 7
VALID = batchify(np.random.default_rng(1).integers(0, VOCAB, size=20).astype(np.int32), BATCH)
SCHEDULE = epoch_decay(0.5, 0.5, 1, STEPS)
OPTIMIZER = make_optimizer("sgd", SCHEDULE, clip_norm=1.0)


def init_params():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(42), 3)
    return {
        "emb": 0.5 * jax.random.normal(k1, (VOCAB, HIDDEN), jnp.float32),
        "w_hh": 0.5 * jax.random.normal(k2, (HIDDEN, HIDDEN), jnp.float32),
        "w_out": 0.5 * jax.random.normal(k3, (HIDDEN, VOCAB), jnp.float32),
        "b_out": jnp.zeros((VOCAB,), jnp.float32),
    }


def zeros_carry():
    return jnp.zeros((BATCH, HIDDEN), jnp.float32)


# One array shared by the initial state and every epoch's reset, as a script would write it:
# the loop must not let the donating step delete it.
ZEROS = zeros_carry()


def forward(params, h, inputs, key):
    def cell(h, x_t):
        h = jnp.tanh(params["emb"][x_t] + h @ params["w_hh"])
        return h, h

    h, hs = jax.lax.scan(cell, h, inputs.T)  # hs [T, B, H]
    if key is not None:
        keep = jax.random.bernoulli(key, 0.8, hs.shape)
        hs = jnp.where(keep, hs / 0.8, 0.0)
    logits = hs @ params["w_out"] + params["b_out"][None, None, :]
    return h, jax.nn.log_softmax(logits, axis=-1)


def token_nll(log_probs, targets):
    picked = jnp.take_along_axis(log_probs, targets.T[..., None], axis=-1)
    return -picked[..., 0]


def loss_fn(params, carry, batch, key):
    inputs, targets, scale = batch
    carry, log_probs = forward(params, carry, inputs, key)
    loss = jnp.mean(token_nll(log_probs, targets)) * scale
    return loss, (carry, {"tokens": jnp.asarray(targets.size, jnp.float32)})


def eval_fn(params, carry, batch):
    inputs, targets = batch
    carry, log_probs = forward(params, carry, inputs, None)
    nll = token_nll(log_probs, targets)
    return carry, {"loss_sum": jnp.sum(nll), "count": jnp.asarray(nll.size, jnp.int32)}


TRAIN_STEP = make_train_step(loss_fn, OPTIMIZER)
EVAL_STEP = make_eval_step(eval_fn)


def evaluate_fn(state, epoch):
    windows = (get_window(VALID, i, BPTT) for i in range(num_windows(VALID, BPTT)))
    sums = evaluate(EVAL_STEP, state.params, zeros_carry(), windows)
    return {"loss": sums["loss_sum"] / sums["count"]}


def get_batch(epoch, index):
    inputs, targets = get_window(STREAM, index, BPTT)
    return inputs, targets, np.float32(1.0)


def fresh_state():
    return TrainState.create(init_params(), OPTIMIZER, seed=3, carry=ZEROS)


def train(out_dir, *, resume=False, max_steps=None, batch_fn=get_batch, num_epochs=3):
    return run_training(
        state=fresh_state(), train_step=TRAIN_STEP, get_batch=batch_fn,
        steps_per_epoch=STEPS, num_epochs=num_epochs, out_dir=out_dir, ckpt_every=4,
        resume=resume, on_epoch_start=lambda s, e: s._replace(carry=ZEROS),
        evaluate_fn=evaluate_fn, log_every=3, max_steps=max_steps,
        tokens_per_step=BATCH * BPTT, extra_metrics=lambda s: {"lr": SCHEDULE(s.step - 1)},
        progress=False, verbose=False,
    )


def assert_bitwise_equal(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def lines_without_timings(path):
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    state, summary = train(out)
    return out, state, summary


def test_reference_run_logs_and_learns(reference):
    out, state, summary = reference
    assert int(state.step) == 3 * STEPS and summary["finished"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    splits = [r["split"] for r in records]
    assert splits.count("train_epoch") == 3 and splits.count("valid") == 3
    # train lines every 3 steps plus at each epoch end (7, 14, 21).
    assert [r["step"] for r in records if r["split"] == "train"] == [
        3, 6, 7, 9, 12, 14, 15, 18, 21]
    first = records[0]
    assert set(first) >= {"step", "epoch", "split", "loss", "ppl", "lr", "tokens_per_sec",
                          "grad_norm", "tokens", "wall_s"}
    assert first["ppl"] == pytest.approx(np.exp(first["loss"]))
    assert [r["lr"] for r in records if r["split"] == "valid"] == [0.5, 0.25, 0.125]
    assert list(first)[:6] == ["step", "epoch", "split", "loss", "ppl", "lr"]
    train_ppl = [r["ppl"] for r in summary["history"] if r["split"] == "train_epoch"]
    assert train_ppl[2] < train_ppl[1] < train_ppl[0]
    assert summary["last"]["valid"]["epoch"] == 3.0
    assert summary["valid_ppl"] == summary["last"]["valid"]["ppl"]
    assert summary["train_ppl"] == train_ppl[2]
    assert summary["tokens_per_sec"] > 0
    with Checkpointer(out / "checkpoints") as ckpt:
        assert ckpt.latest_step() == 21
    assert plot_curves(out / "metrics.jsonl", out / "ppl.png").exists()


def assert_same_run(out, state, reference):
    ref_out, ref_state, ref_summary = reference
    assert_bitwise_equal(state, ref_state)
    assert lines_without_timings(out / "metrics.jsonl") == lines_without_timings(
        ref_out / "metrics.jsonl")


def test_stop_at_non_checkpoint_step_then_resume(tmp_path, reference):
    _, partial_summary = train(tmp_path, max_steps=10)  # checkpoints at 4, 7, 8
    assert not partial_summary["finished"] and partial_summary["step"] == 10
    state, summary = train(tmp_path, resume=True)
    assert summary["resumed_from"] == 8
    assert_same_run(tmp_path, state, reference)


def test_crash_in_get_batch_with_torn_line_then_resume_twice(tmp_path, reference):
    def crash_at(step):
        def batch_fn(epoch, index):
            if epoch * STEPS + index == step:
                raise Crash(step)
            return get_batch(epoch, index)
        return batch_fn

    with pytest.raises(Crash):
        train(tmp_path, batch_fn=crash_at(13))  # mid-epoch 1, last checkpoint 12
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 13, "spl')  # a kill -9 in the middle of a line
    with pytest.raises(Crash):
        train(tmp_path, resume=True, batch_fn=crash_at(14))  # right at an epoch start
    state, summary = train(tmp_path, resume=True)
    assert summary["resumed_from"] == 14
    assert_same_run(tmp_path, state, reference)
    # Resuming a finished run does nothing and returns the same state.
    again, again_summary = train(tmp_path, resume=True)
    assert again_summary["resumed_from"] == 21
    assert_bitwise_equal(again, state)


def test_refuses_to_overwrite_without_resume(tmp_path):
    train(tmp_path, max_steps=4)
    with pytest.raises(FileExistsError, match="latest step 4.*resume=True"):
        train(tmp_path, max_steps=4)


def test_non_finite_loss_stops_without_saving(tmp_path):
    def nan_at(step):
        def batch_fn(epoch, index):
            inputs, targets, scale = get_batch(epoch, index)
            return inputs, targets, np.float32(np.nan if epoch * STEPS + index == step else 1)
        return batch_fn

    # Update 10 is bad; checkpoint 12 would come before the next log step (12), so the
    # finiteness check before saving must catch it.
    with pytest.raises(NonFiniteLossError, match=r"at step 10 \(epoch 1, batch 3\).*step 8"):
        run_training(
            state=fresh_state(), train_step=TRAIN_STEP, get_batch=nan_at(10),
            steps_per_epoch=STEPS, num_epochs=3, out_dir=tmp_path, ckpt_every=4,
            log_every=100, progress=False, verbose=False,
        )
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.latest_step() == 8
    # Found at a log step too (no checkpoint due there).
    with pytest.raises(NonFiniteLossError, match="at step 1 "):
        train(tmp_path / "b", batch_fn=nan_at(1))


def test_run_for_script_turns_loop_errors_into_exit_codes(tmp_path, capsys):
    from jaxrnn.train.cli import EXIT_BAD_INPUT, EXIT_NON_FINITE, run_for_script

    common = dict(train_step=TRAIN_STEP, steps_per_epoch=STEPS, num_epochs=1, ckpt_every=4,
                  progress=False, verbose=False)
    state, summary = run_for_script(state=fresh_state(), get_batch=get_batch,
                                    out_dir=tmp_path / "a", max_steps=4, **common)
    assert int(state.step) == 4 and summary["step"] == 4
    again = run_for_script(state=fresh_state(), get_batch=get_batch, out_dir=tmp_path / "a",
                           max_steps=4, **common)
    assert again == EXIT_BAD_INPUT
    assert "error: run_training: " in capsys.readouterr().err

    def nan_batch(epoch, index):
        inputs, targets, _ = get_batch(epoch, index)
        return inputs, targets, np.float32(np.nan)

    code = run_for_script(state=fresh_state(), get_batch=nan_batch, out_dir=tmp_path / "b",
                          **common)
    assert code == EXIT_NON_FINITE
    assert "non-finite loss" in capsys.readouterr().err


def test_lr_metric_reports_the_rate_of_the_last_update():
    from jaxrnn.train import epoch_decay, lr_metric

    metric = lr_metric(epoch_decay(1.0, 0.5, 1, steps_per_epoch=10))
    assert metric(fresh_state()) == {"lr": 1.0}  # step 0: nothing done yet, the first rate
    assert metric(fresh_state()._replace(step=np.int32(10))) == {"lr": 1.0}  # update 9
    assert metric(fresh_state()._replace(step=np.int32(11))) == {"lr": 0.5}  # update 10


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int; got 0"):
        run_training(state=fresh_state(), train_step=TRAIN_STEP, get_batch=get_batch,
                     steps_per_epoch=0, num_epochs=1, out_dir=tmp_path)


def test_kill_9_then_resume(tmp_path, reference):
    """A real SIGKILL of a training process at an arbitrary moment, then resume here."""
    code = f"""
import sys, time
import jax
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_train_loop as t

def slow(epoch, index):
    time.sleep(0.05)
    return t.get_batch(epoch, index)

t.train({str(tmp_path)!r}, batch_fn=slow)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and metrics.read_text().count("\n") >= 6:  # past epoch 0
                break
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the training process ended before the kill"
    state, summary = train(tmp_path, resume=True)
    assert summary["resumed_from"] is not None
    assert_same_run(tmp_path, state, reference)


def _damage_largest_file(folder, how):
    path = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 1
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))


def test_resume_skips_corrupt_checkpoints_and_still_ends_bitwise_identical(
        tmp_path, reference, capsys):
    train(tmp_path, max_steps=10)  # checkpoints 4, 7, 8
    _damage_largest_file(tmp_path / "checkpoints" / "8" / "state", "flip")
    _damage_largest_file(tmp_path / "checkpoints" / "7" / "state", "truncate")
    state, summary = train(tmp_path, resume=True)  # re-does steps 4..10
    out = capsys.readouterr().out
    assert summary["resumed_from"] == 4
    assert "warning: checkpoint 8 at " in out and "warning: checkpoint 7 at " in out
    assert "resuming from checkpoint 4, the newest intact one (skipped 8, 7)" in out
    assert "Traceback" not in out
    assert sorted(p.name for p in (tmp_path / "checkpoints.corrupt").iterdir()) == ["7", "8"]
    assert_same_run(tmp_path, state, reference)


def test_divergence_exit_codes_and_messages(tmp_path, capsys):
    from jaxrnn.train import CorruptCheckpointError, perplexity
    from jaxrnn.train.cli import EXIT_BAD_INPUT, EXIT_NON_FINITE, run_for_script

    assert perplexity(1000.0) == float("inf") and perplexity(2.0) == pytest.approx(np.exp(2))
    assert np.isnan(perplexity(float("nan")))
    common = dict(train_step=TRAIN_STEP, steps_per_epoch=STEPS, num_epochs=2, ckpt_every=4,
                  progress=False, verbose=False, get_batch=get_batch)
    # A finite validation loss whose perplexity overflows: exit 3 before epoch 0's checkpoint.
    code = run_for_script(state=fresh_state(), out_dir=tmp_path / "a",
                          evaluate_fn=lambda s, e: {"loss": 800.0}, **common)
    err = capsys.readouterr().err
    assert code == EXIT_NON_FINITE
    assert "non-finite valid ppl (ppl inf) in the evaluation after epoch 1 (step 7)" in err
    assert "the last good checkpoint is step 4" in err
    with Checkpointer(tmp_path / "a" / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [4]

    # Every step's loss finite (3e38, its gradient not), but their float32 sum overflows.
    def huge_loss(params, carry, batch, key):
        loss, aux = loss_fn(params, carry, batch, key)
        return loss + jax.lax.stop_gradient(jnp.float32(3e38)), aux

    with pytest.raises(NonFiniteLossError, match=r"running sum of loss \(overflow\) at step 1"):
        run_training(state=fresh_state(), out_dir=tmp_path / "b", **{
            **common, "log_every": 2, "train_step": make_train_step(huge_loss, OPTIMIZER)})

    # A finite loss of 800 nats: its perplexity overflows; found before checkpoint 4.
    def overflowing_loss(params, carry, batch, key):
        loss, aux = loss_fn(params, carry, batch, key)
        return loss + jax.lax.stop_gradient(jnp.float32(800.0)), aux

    with pytest.raises(NonFiniteLossError, match=r"non-finite train perplexity \(mean loss "
                                                 r"80\d\.\d+ over the last 4 steps; exp "
                                                 r"overflows\) at step 3 .*no good checkpoint"):
        run_training(state=fresh_state(), out_dir=tmp_path / "o", **{
            **common, "log_every": 100,
            "train_step": make_train_step(overflowing_loss, OPTIMIZER)})
    with Checkpointer(tmp_path / "o" / "checkpoints") as ckpt:
        assert ckpt.all_steps() == []

    # Every checkpoint corrupt: resume refuses (exit 2) in one line.
    train(tmp_path / "c", max_steps=4)
    _damage_largest_file(tmp_path / "c" / "checkpoints" / "4" / "state", "flip")
    with pytest.raises(CorruptCheckpointError, match="no earlier checkpoint"):
        train(tmp_path / "c", resume=True)
    code = run_for_script(state=fresh_state(), out_dir=tmp_path / "c", resume=True, **common)
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1 and err.startswith("error: checkpoint 4 at ")


def test_a_failed_checkpoint_write_exits_4_naming_path_and_errno(tmp_path, capsys,
                                                                   monkeypatch):
    import errno

    from jaxrnn.train import checkpoint
    from jaxrnn.train.cli import EXIT_OS_ERROR, run_for_script

    real = checkpoint._fsync_tree

    def full_disk(root):
        if root.name == "8":
            raise OSError(errno.ENOSPC, "No space left on device", str(root / "state"))
        real(root)

    monkeypatch.setattr(checkpoint, "_fsync_tree", full_disk)
    code = run_for_script(state=fresh_state(), train_step=TRAIN_STEP, get_batch=get_batch,
                          steps_per_epoch=STEPS, num_epochs=2, ckpt_every=4, progress=False,
                          verbose=False, out_dir=tmp_path)
    err = capsys.readouterr().err
    assert code == EXIT_OS_ERROR
    assert err == (f"error: cannot save checkpoint 8: No space left on device (errno "
                   f"{errno.ENOSPC} ENOSPC) writing {tmp_path}/checkpoints/8/state; the "
                   "earlier checkpoints are intact\n")
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [4, 7]
        ckpt.restore(like=fresh_state())
