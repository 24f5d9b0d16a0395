"""Tests for jaxrnn.train.checkpoint: bitwise save/restore, atomicity, retention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn.train import Checkpointer, TrainState, make_optimizer


def make_state(seed, carry=None):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = {
        "w": jax.random.normal(keys[0], (4, 3), jnp.float32),
        "emb": jax.random.normal(keys[1], (5, 2), jnp.float32).astype(jnp.bfloat16),
        "count": jnp.arange(3, dtype=jnp.int32),
    }
    with jax.numpy_dtype_promotion("standard"):
        optimizer = make_optimizer("adam", 1e-3, clip_norm=1.0)
        state = TrainState.create(params, optimizer, key=keys[2], carry=carry)
        # A non-trivial optimizer state: one adam update on random gradients.
        floats = {"w": params["w"], "emb": params["emb"]}
        opt_state = make_optimizer("adam", 1e-3, clip_norm=1.0).init(floats)
        _, opt_state = optimizer.update(floats, opt_state, floats)
    return state._replace(step=jnp.asarray(7 + seed, jnp.int32), opt_state=opt_state)


def assert_bitwise_equal(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_save_restore_bitwise_with_opt_state_key_and_carry(tmp_path):
    carry = (jnp.full((2, 3), 0.1, jnp.float32), jnp.full((2, 3), -0.2, jnp.float32))
    state = make_state(0, carry=carry)
    metadata = {"epoch": 1.5, "metrics_lines": 12, "sums": {"loss": 0.1 + 0.2}}
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        assert ckpt.latest_step() is None
        ckpt.save(7, state, metadata)
        assert ckpt.latest_step() == 7
        like = make_state(1, carry=carry)  # different values, same structure
        restored, meta = ckpt.restore(like=like)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
        restored_abstract, _ = ckpt.restore(7, like=abstract)
    assert isinstance(restored, TrainState)
    assert_bitwise_equal(restored, state)
    assert_bitwise_equal(restored_abstract, state)
    assert meta == metadata
    # A second Checkpointer on the same folder sees the checkpoint.
    with Checkpointer(tmp_path / "ckpt") as again:
        assert again.latest_step() == 7


def test_none_carry_and_mismatched_like(tmp_path):
    state = make_state(0)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state, {})
        restored, _ = ckpt.restore(like=state)
        assert restored.carry is None
        assert_bitwise_equal(restored, state)
        wrong = state._replace(params={**state.params, "w": jnp.zeros((4, 4), jnp.float32)})
        with pytest.raises(ValueError, match=r"shape \(4, 3\).*expected shape \(4, 4\)"):
            ckpt.restore(like=wrong)
        with pytest.raises(FileNotFoundError, match=r"no checkpoint for step=5.*\[1\]"):
            ckpt.restore(5, like=state)
        with pytest.raises(ValueError, match="step=1 is not newer than the latest checkpoint 1"):
            ckpt.save(1, state, {})


def test_half_written_tmp_dir_is_ignored(tmp_path):
    state = make_state(0)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(5, state, {"step": 5})
    # What a kill -9 in the middle of saving step 9 leaves behind.
    tmp = tmp_path / "9.orbax-checkpoint-tmp-1234567890"
    (tmp / "state").mkdir(parents=True)
    (tmp / "state" / "manifest.ocdbt").write_bytes(b"\x00partial")
    (tmp / "metadata").mkdir()
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 5
        assert ckpt.all_steps() == [5]
        restored, meta = ckpt.restore(like=state)
        assert meta == {"step": 5}
        assert_bitwise_equal(restored, state)
        ckpt.save(9, state, {"step": 9})  # the step can be saved again afterwards
        assert ckpt.latest_step() == 9


def test_max_to_keep(tmp_path):
    state = make_state(0)
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        for step in (1, 2, 3):
            ckpt.save(step, state, {"step": step})
        assert ckpt.all_steps() == [2, 3]
    with pytest.raises(ValueError, match="max_to_keep must be a positive int; got 0"):
        Checkpointer(tmp_path, max_to_keep=0)


def test_dtype_mismatch_is_an_error_not_a_cast(tmp_path):
    state = make_state(0)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state, {})
        wrong = state._replace(params={**state.params,
                                       "emb": state.params["emb"].astype(jnp.float32)})
        with pytest.raises(ValueError, match=r"'params.emb'.*dtype bfloat16; expected .* "
                                             r"dtype float32"):
            ckpt.restore(like=wrong)
        extra = state._replace(carry=jnp.zeros((2,), jnp.float32))
        with pytest.raises(ValueError, match=r"missing from the checkpoint: \['carry'\]"):
            ckpt.restore(like=extra)


def _largest_file(folder):
    files = [p for p in folder.rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def _damage(folder, how):
    """Flips one bit in the middle of, or truncates, the largest file under ``folder``."""
    path = _largest_file(folder)
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 1
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_checkpoint_is_reported_in_one_line(tmp_path, how):
    from jaxrnn.train import CorruptCheckpointError

    state = make_state(0)
    big = state._replace(params={**state.params, "w": jax.random.normal(
        jax.random.PRNGKey(5), (64, 64), jnp.float32)})
    with Checkpointer(tmp_path / "c") as ckpt:
        ckpt.save(1, big, {"n": 1})
        ckpt.save(2, big, {"n": 2})
        _damage(tmp_path / "c" / "2" / "state", how)
        with pytest.raises(CorruptCheckpointError, match=r"checkpoint 2 at .*/c/2 is corrupt: ")\
                as info:
            ckpt.restore(like=big)
        assert "\n" not in str(info.value) and len(str(info.value)) < 700
        messages = []
        step, restored, meta = ckpt.restore_intact(like=big, report=messages.append)
        assert step == 1 and meta == {"n": 1}
        assert_bitwise_equal(restored, big)
        assert len(messages) == 2 and "checkpoint 2" in messages[0]
        assert messages[1] == "resuming from checkpoint 1, the newest intact one (skipped 2)"
        # The damaged one was moved aside, so step 2 can be saved again.
        assert ckpt.all_steps() == [1] and (tmp_path / "c.corrupt" / "2").is_dir()
        ckpt.save(2, big, {"n": 2})
        assert ckpt.restore(like=big)[1] == {"n": 2}


def test_changed_metadata_and_no_intact_checkpoint(tmp_path):
    from jaxrnn.train import CorruptCheckpointError

    state = make_state(0)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, state, {"metrics_lines": 12})
        meta_file = next((tmp_path / "3" / "metadata").rglob("metadata"))
        meta_file.write_text(meta_file.read_text().replace("12", "13"))
        with pytest.raises(CorruptCheckpointError, match="its metadata differs from the sha256"):
            ckpt.restore(like=state)
        with pytest.raises(CorruptCheckpointError, match=r"no earlier checkpoint .* is intact "
                                                          r"\(tried 3\)"):
            ckpt.restore_intact(like=state, report=lambda message: None)
        assert ckpt.all_steps() == [3]  # nothing moved when nothing is intact
    with Checkpointer(tmp_path / "empty") as ckpt:
        assert ckpt.restore_intact(like=state) is None


def test_non_finite_states_are_never_good_checkpoints(tmp_path):
    from jaxrnn.train import CorruptCheckpointError, NonFiniteStateError

    state = make_state(0)
    bad = state._replace(params={**state.params, "w": state.params["w"].at[0, 0].set(jnp.inf)})
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state, {})
        with pytest.raises(NonFiniteStateError, match=r"checkpoint 2 not saved: the state holds "
                                                      r"NaN or infinite values in \.params\['w'\]"):
            ckpt.save(2, bad, {}, require_finite=True)
        assert ckpt.all_steps() == [1]
        ckpt.save(2, bad, {})  # allowed without require_finite, but never restored as good
        with pytest.raises(CorruptCheckpointError, match="holds NaN or infinite values"):
            ckpt.restore(like=state)
        restored, _ = ckpt.restore(like=state, allow_non_finite=True)
        assert_bitwise_equal(restored, bad)
        assert ckpt.restore_intact(like=state, report=lambda m: None)[0] == 1


def test_reserved_metadata_keys(tmp_path):
    with Checkpointer(tmp_path) as ckpt, pytest.raises(ValueError, match="reserved"):
        ckpt.save(1, make_state(0), {"_jaxrnn_state_sha256": "x"})


def test_a_failed_write_names_path_and_errno_and_keeps_the_earlier_checkpoint(tmp_path):
    """A real OS error from tensorstore's writer: a file size limit (EFBIG), like a full disk."""
    import subprocess
    import sys

    code = f"""
import resource, signal
import jax, jax.numpy as jnp
from jaxrnn.train import Checkpointer, CheckpointSaveError
ckpt = Checkpointer({str(tmp_path)!r})
ckpt.save(1, {{"w": jnp.ones((4,))}}, {{}})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
try:
    ckpt.save(2, {{"w": jax.random.normal(jax.random.PRNGKey(0), (50000,))}}, {{}})
except CheckpointSaveError as err:
    print("ERR", err.errno, err)
print("STEPS", ckpt.all_steps())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    err_line = next(line for line in done.stdout.splitlines() if line.startswith("ERR"))
    assert err_line.startswith("ERR 27 cannot save checkpoint 2: File too large (errno 27 "
                               "EFBIG) writing " + str(tmp_path))
    assert "the earlier checkpoints are intact" in err_line
    assert "STEPS [1]" in done.stdout
    assert "Traceback" not in done.stderr  # orbax's own error log is silenced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]  # no half-written folder
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.restore(like={"w": jnp.zeros((4,))})[0]["w"].tolist() == [1.0] * 4
