"""Params from another cell, size or model, bad carries into ``step``, bad learning rates:
each a clear error naming the parameter (or argument), its shape and the expected one."""

import jax
import jax.numpy as jnp
import pytest

import jaxrnn
from jaxrnn.train import epoch_decay, make_optimizer

KEY = jax.random.PRNGKey(0)
XS = jnp.ones((2, 3, 3))
LSTM = jaxrnn.LSTM(4)
PARAMS = LSTM.init(KEY, 3)


@pytest.mark.parametrize("strategy", ["in_loop", "fused"])
def test_params_of_another_cell_or_size_name_the_parameter(strategy):
    gru = jaxrnn.GRU(4).init(KEY, 3)
    with pytest.raises(ValueError, match=r"LSTM: params\['b_hh'\] has shape \(12,\); expected "
                                         r"\(16,\) from LSTM\(hidden_size=4\)\.init\(key, "
                                         r"input_size=3\)"):
        jaxrnn.scan(LSTM, gru, XS, strategy=strategy)
    bigger = jaxrnn.LSTM(8).init(KEY, 3)
    with pytest.raises(ValueError, match=r"params\['b_hh'\] has shape \(32,\); expected \(16,\)"):
        jaxrnn.scan(LSTM, bigger, XS, strategy=strategy)
    missing = {k: v for k, v in PARAMS.items() if k != "b_hh"}
    with pytest.raises(ValueError, match=r"params do not fit LSTM\(hidden_size=4\)\.init\(key, "
                                         r"input_size=3\): missing params\['b_hh'\]"):
        jaxrnn.scan(LSTM, missing, XS, strategy=strategy)
    with pytest.raises(ValueError, match=r"unexpected params\['extra'\]"):
        jaxrnn.scan(LSTM, {**PARAMS, "extra": jnp.zeros(2)}, XS, strategy=strategy)


def test_step_checks_params_and_carry():
    carry = LSTM.initial_carry(PARAMS)
    x = jnp.ones(3)
    with pytest.raises(ValueError, match=r"LSTM\.step: params\['b_hh'\] has shape \(12,\)"):
        LSTM.step(jaxrnn.GRU(4).init(KEY, 3), carry, x)
    with pytest.raises(ValueError, match=r"LSTM\.step: carry has structure PyTreeDef\(None\); "
                                         r"expected .*LSTMState"):
        LSTM.step(PARAMS, None, x)
    with pytest.raises(ValueError, match=r"LSTM\.step: carry has structure"):
        LSTM.step(PARAMS, (carry.h, carry.c, carry.h), x)
    with pytest.raises(ValueError, match=r"LSTM\.step: carry\.h has shape \(2, 4\); expected "
                                         r"\(4,\)"):
        LSTM.step(PARAMS, jax.tree.map(lambda c: jnp.zeros((2, 4)), carry), x)
    with pytest.raises(TypeError, match=r"LSTM\.step: carry\.h has dtype int32"):
        LSTM.step(PARAMS, jax.tree.map(lambda c: c.astype(jnp.int32), carry), x)
    new_carry, y = LSTM.step(PARAMS, carry, x)  # the right ones still work
    assert y.shape == (4,) and new_carry.h.shape == (4,)


def test_bidirectional_stack_with_unidirectional_params():
    uni = jaxrnn.StackedRNN(jaxrnn.LSTM(4)).init(KEY, 3)
    bi = jaxrnn.StackedRNN(jaxrnn.LSTM(4), bidirectional=True)
    with pytest.raises(ValueError, match=r"StackedRNN\.apply: params do not fit this "
                                         r"StackedRNN's init\(key, input_size=3\): missing "
                                         r"params\['layers'\]\[0\]\['bwd'\]\['b_hh'\], .*"
                                         r"\['w_ih'\] \(params of another cell or model\?\)"):
        bi.apply(uni, XS)


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("inf"), float("nan")])
def test_learning_rates_must_be_finite_and_positive(bad):
    with pytest.raises(ValueError, match=f"make_optimizer: learning_rate must be a finite "
                                         f"number > 0; got {bad}"):
        make_optimizer("sgd", bad, clip_norm=None)
    with pytest.raises(ValueError, match=f"epoch_decay: base_lr must be a finite number > 0; "
                                         f"got {bad}"):
        epoch_decay(bad, 0.5, 1, 10)
