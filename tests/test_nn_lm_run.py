"""jaxrnn.nn.load_language_model_run: a language model back from its run folder."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import train
from jaxrnn.data import Vocabulary

WORDS = ("<eos>", "the", "company", "said", "it", "would")
SPEC = {"vocab_size": len(WORDS), "hidden_size": 8, "num_layers": 2, "init_scale": 0.5,
        "compute_dtype": "float32"}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as a training loop leaves it: model.json, vocab.txt, a checkpoint."""
    out = tmp_path_factory.mktemp("lm_run")
    model = jaxrnn.nn.build_language_model(SPEC)
    params = model.init(jax.random.PRNGKey(1))
    with jax.numpy_dtype_promotion("standard"):  # optax's init is not strict-clean
        optimizer = train.make_optimizer("adam", 1e-3, clip_norm=1.0)
        state = train.TrainState.create(params, optimizer, seed=0,
                                        carry=model.initial_state(params, 2))
    with train.Checkpointer(out / "checkpoints") as checkpointer:
        checkpointer.save(7, state, {"step": 7})
    jaxrnn.nn.write_language_model_files(out, SPEC, Vocabulary(WORDS))
    (out / "config.json").write_text(json.dumps({"lr": 1e-3}))
    return out, params


def test_restores_model_params_and_vocabulary(run_folder):
    out, params = run_folder
    (out / "checkpoints" / "9.orbax-checkpoint-tmp-1").mkdir()  # a save in progress
    run = jaxrnn.nn.load_language_model_run(out)
    assert (out / "checkpoints" / "9.orbax-checkpoint-tmp-1").is_dir()  # left alone
    assert run.step == 7 and run.config == {"lr": 1e-3} and run.spec == SPEC
    assert tuple(run.vocab) == WORDS and run.model.vocab_size == len(WORDS)
    assert run.model.rnn.num_layers == 2 and run.model.embed_size == 8
    assert jax.tree.structure(run.params) == jax.tree.structure(params)
    for got, want in zip(jax.tree.leaves(run.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(got, want)


def test_sample_is_seeded_and_greedy_is_the_argmax_chain(run_folder):
    out, params = run_folder
    run = jaxrnn.nn.load_language_model_run(out)
    drawn = run.sample("the company", 6, seed=4)
    assert drawn == run.sample(["the", "company"], 6, seed=4) and len(drawn) == 6
    assert set(drawn) <= set(WORDS)
    greedy = run.sample("", 5, temperature=0.0)  # an empty prompt starts after <eos>
    step = jax.jit(functools.partial(run.model.step, params))
    state, token, expected = run.model.initial_state(params, 1), jnp.asarray([0]), []
    for _ in range(5):
        state, logits = step(state, token)
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        expected.append(WORDS[int(token[0])])
    assert greedy == expected


def test_errors_name_what_is_wrong(run_folder, tmp_path):
    out, _ = run_folder
    run = jaxrnn.nn.load_language_model_run(out)
    with pytest.raises(ValueError, match=r"prompt words \['zebra'\] are not in the run's"):
        run.sample("the zebra", 3)
    with pytest.raises(ValueError, match="num_tokens must be a positive int; got 0"):
        run.sample("the", 0)
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        run.sample("the", 2, temperature=-1.0)
    with pytest.raises(FileNotFoundError, match="model.json is missing"):
        jaxrnn.nn.load_language_model_run(tmp_path)
    with pytest.raises(ValueError, match=r"unknown keys \['hiden_size'\]"):
        jaxrnn.nn.build_language_model({"vocab_size": 3, "hidden_size": 2, "hiden_size": 2})
    with pytest.raises(ValueError, match="vocab has 2 words; spec has vocab_size=6"):
        jaxrnn.nn.write_language_model_files(tmp_path, SPEC, ["a", "b"])
    jaxrnn.nn.write_language_model_files(tmp_path, {**SPEC, "hidden_size": 4}, WORDS)
    (tmp_path / "checkpoints").symlink_to(out / "checkpoints")
    with pytest.raises(ValueError, match="has shape .* expected shape"):
        jaxrnn.nn.load_language_model_run(tmp_path)  # the checkpoint's model is another one


def test_restore_entry_needs_a_saved_entry(run_folder):
    out, params = run_folder
    with train.Checkpointer(out / "checkpoints", read_only=True) as checkpointer:
        with pytest.raises(ValueError, match="no arrays under 'weights'"):
            checkpointer.restore_entry("weights", like=params)
        with pytest.raises(ValueError, match="opened read_only"):
            checkpointer.save(8, params, {})
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        train.Checkpointer(out / "nothing", read_only=True)
