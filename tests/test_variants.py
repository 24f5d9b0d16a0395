"""Descriptor tests: every registered variant through the same checks (haiku's habit).

Shapes, the pinned parameter layout, jit, vmap, the step split, argument errors; and the
registry's names / describe / make. Gradients through jaxrnn.scan are checked with the equations
(tests/test_variants_equations.py), to compile each scan once.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import variants
from jaxrnn.cells.lstm_family import LSTMFamily

H, D = 3, 2

# Pinned parameter layouts (name -> shape) for hidden_size=3, input_size=2: a refactor must not
# silently change a checkpoint's layout.
GOLDEN = {
    "vanilla": {
        "w_ih": (12, 2), "w_hh": (12, 3), "b_ih": (12,), "b_hh": (12,), "p_i": (3,), "p_f": (3,),
        "p_o": (3,),
    },
    "nig": {"w_ih": (9, 2), "w_hh": (9, 3), "b_ih": (9,), "b_hh": (9,), "p_f": (3,), "p_o": (3,)},
    "nfg": {"w_ih": (9, 2), "w_hh": (9, 3), "b_ih": (9,), "b_hh": (9,), "p_i": (3,), "p_o": (3,)},
    "nog": {"w_ih": (9, 2), "w_hh": (9, 3), "b_ih": (9,), "b_hh": (9,), "p_i": (3,), "p_f": (3,)},
    "niaf": {
        "w_ih": (12, 2), "w_hh": (12, 3), "b_ih": (12,), "b_hh": (12,), "p_i": (3,), "p_f": (3,),
        "p_o": (3,),
    },
    "noaf": {
        "w_ih": (12, 2), "w_hh": (12, 3), "b_ih": (12,), "b_hh": (12,), "p_i": (3,), "p_f": (3,),
        "p_o": (3,),
    },
    "cifg": {"w_ih": (9, 2), "w_hh": (9, 3), "b_ih": (9,), "b_hh": (9,), "p_i": (3,), "p_o": (3,)},
    "np": {"w_ih": (12, 2), "w_hh": (12, 3), "b_ih": (12,), "b_hh": (12,)},
    "fgr": {
        "w_ih": (12, 2), "w_hh": (12, 3), "b_ih": (12,), "b_hh": (12,), "p_i": (3,), "p_f": (3,),
        "p_o": (3,), "w_gg": (9, 9),
    },
    "fb1": {"w_ih": (12, 2), "w_hh": (12, 3), "b_ih": (12,), "b_hh": (12,)},
    "lnlstm": {
        "w_ih": (12, 2), "w_hh": (12, 3), "b_ih": (12,), "b_hh": (12,), "ln_x_gain": (12,),
        "ln_h_gain": (12,), "ln_c_gain": (3,), "ln_c_bias": (3,),
    },
    "gru": {"w_ih": (9, 2), "w_hh": (9, 3), "b_ih": (9,), "b_hh": (9,)},
    "gru_cho": {"w_ih": (9, 2), "w_hh": (9, 3), "b_ih": (9,), "b_hh": (9,)},
    "mgu": {"w_ih": (6, 2), "w_hh": (6, 3), "b_ih": (6,), "b_hh": (6,)},
    "mingru": {"w_ih": (6, 2), "b_ih": (6,)},
    "minlstm": {"w_ih": (9, 2), "b_ih": (9,)},
    "lru": {
        "w_ih": (6, 2), "nu_log": (3,), "theta_log": (3,), "gamma_log": (3,), "c_re": (3, 3),
        "c_im": (3, 3), "w_skip": (3, 2),
    },
    "rglru": {"w_ih": (9, 2), "b_ih": (9,), "a_logit": (3,)},
    "mingru_neg": {"w_ih": (6, 2), "b_ih": (6,)},
    "rglru_neg": {"w_ih": (9, 2), "b_ih": (9,), "a_logit": (3,)},
    "mamba": {"w_ih": (38, 2), "b_ih": (38,), "a_log": (3, 16), "d_skip": (3,)},
    "mamba_neg": {"w_ih": (38, 2), "b_ih": (38,), "a_log": (3, 16), "d_skip": (3,)},
    "slstm": {"w_ih": (12, 2), "w_hh": (12, 3), "b_ih": (12,)},
    "mlstm": {"w_ih": (14, 2), "b_ih": (14,)},
    "deltanet": {"w_ih": (10, 2), "b_ih": (10,)},
    "deltanet_neg": {"w_ih": (10, 2), "b_ih": (10,)},
    "gated_deltanet": {"w_ih": (11, 2), "b_ih": (11,), "a_log": (1,)},
    "gated_deltanet_neg": {"w_ih": (11, 2), "b_ih": (11,), "a_log": (1,)},
}


def test_names_and_golden_agree():
    assert tuple(GOLDEN) == variants.names()
    assert variants.names()[0] == "vanilla"
    assert len(set(variants.names())) == len(variants.names())


@pytest.fixture(params=variants.names())
def built(request):
    cell = variants.make(request.param, H)
    return request.param, cell, cell.init(jax.random.PRNGKey(0), D)


def test_parameter_layout_is_pinned(built):
    name, cell, params = built
    assert {k: tuple(v.shape) for k, v in params.items()} == GOLDEN[name]
    assert list(params) == list(GOLDEN[name])
    assert variants.parameter_count(cell, D) == sum(int(np.prod(s)) for s in GOLDEN[name].values())


def test_step_shapes_split_jit_vmap(built):
    name, cell, params = built
    hash(cell)  # usable as a static argument
    x = jax.random.normal(jax.random.PRNGKey(1), (D,))
    carry = cell.initial_carry(params)
    assert hasattr(carry, "h") and hasattr(carry, "_fields")
    new, y = cell.step(params, carry, x)
    assert y.shape == (cell.output_size,) and y.dtype == jnp.float32
    assert jax.tree.structure(new) == jax.tree.structure(carry)
    split, y2 = cell.recurrent_step(params, carry, cell.input_projection(params, x))
    np.testing.assert_allclose(y2, y, rtol=1e-6, atol=1e-7)
    jitted = jax.jit(lambda p, c, x: cell.step(p, c, x))
    np.testing.assert_allclose(jitted(params, carry, x)[1], y, rtol=1e-5, atol=1e-6)
    xb = jnp.stack([x, -x])
    cb = cell.initial_carry(params, (2,))
    _, yb = jax.vmap(cell.step, in_axes=(None, 0, 0))(params, cb, xb)
    np.testing.assert_allclose(yb[0], y, rtol=1e-5, atol=1e-6)


def test_bad_input_shape_names_the_argument(built):
    name, cell, params = built
    with pytest.raises(ValueError, match=r"step: x has shape \(2, 2\); expected \(2,\)"):
        cell.step(params, cell.initial_carry(params), jnp.zeros((2, D)))


def test_np_is_the_core_lstm():
    family, core = LSTMFamily(H, peepholes=False), jaxrnn.LSTM(H)
    key = jax.random.PRNGKey(3)
    params = core.init(key, D)
    assert jax.tree.map(jnp.shape, family.init(key, D)) == jax.tree.map(jnp.shape, params)
    xs = jax.random.normal(key, (2, 5, D))
    # bitwise on the same strategy (jaxrnn.scan's "fused" path exists for the core LSTM only)
    np.testing.assert_array_equal(jaxrnn.scan(family, params, xs, strategy="in_loop")[0],
                                  jaxrnn.scan(core, params, xs, strategy="in_loop")[0])
    np.testing.assert_allclose(jaxrnn.scan(family, params, xs)[0], jaxrnn.scan(core, params, xs)[0],
                               rtol=1e-6, atol=1e-7)


def test_registry_describe_and_make():
    for name in variants.names():
        line = variants.describe(name)
        assert "\n" not in line and line.startswith(name + ":")
        assert any(str(year) in line for year in range(1990, 2030))
    assert variants.make("nfg", 8) == LSTMFamily(8, forget_gate=False)
    assert variants.make("vanilla", 8, forget_bias=1.0).forget_bias == 1.0
    assert set(variants.names("linear")) == {"mingru", "minlstm", "lru", "rglru", "mingru_neg",
                                             "rglru_neg", "mamba", "mamba_neg"}
    assert set(variants.names("modern")) == {"slstm", "mlstm", "deltanet", "deltanet_neg",
                                             "gated_deltanet", "gated_deltanet_neg"}
    assert dataclasses.is_dataclass(variants.make("lru", 4))


def test_registry_errors_list_valid_names():
    with pytest.raises(ValueError, match="unknown variant name='lstmm'; valid names: vanilla, nig"):
        variants.make("lstmm", 8)
    with pytest.raises(ValueError, match=r"unknown options \['hiden'\]"):
        variants.make("gru", 8, hiden=3)
    with pytest.raises(ValueError, match=r"would change what defines the variant"):
        variants.make("nfg", 8, forget_gate=True)
    with pytest.raises(ValueError, match="family='cnn'"):
        variants.names("cnn")
    with pytest.raises(ValueError, match="coupled=True .* needs input_gate=True"):
        LSTMFamily(4, coupled=True, input_gate=False)
