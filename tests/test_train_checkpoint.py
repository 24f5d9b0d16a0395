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
