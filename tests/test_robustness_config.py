"""Hyperparameters, keys and foreign arrays: rejected at once with a message naming the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxrnn
from jaxrnn.interop.torch import from_torch
from jaxrnn.nn.language_model import LanguageModel

STACK = jaxrnn.StackedRNN(jaxrnn.LSTM(4))

BAD_HYPERPARAMETERS = [
    (lambda: jaxrnn.LSTM(0), ValueError, "LSTM: hidden_size must be a positive integer; got 0"),
    (lambda: jaxrnn.LSTM(12.5), ValueError, "LSTM: hidden_size must be a positive integer; "
     "got 12.5"),
    (lambda: jaxrnn.LSTM(True), ValueError, "LSTM: hidden_size must be a positive integer"),
    (lambda: jaxrnn.LSTM(4, proj_size=-1), ValueError, "LSTM: proj_size must be an integer >= 0"),
    (lambda: jaxrnn.LSTM(4, forget_bias=float("nan")), ValueError, "forget_bias must be a finite"),
    (lambda: jaxrnn.LSTM(4, param_dtype=jnp.int32), TypeError, "LSTM: param_dtype=.*int32.*; "
     "expected a floating dtype"),
    (lambda: jaxrnn.LSTM(4, compute_dtype="int8"), TypeError, "compute_dtype='int8'; expected "
     "None or a floating dtype"),
    (lambda: jaxrnn.LSTM(4, use_bias="yes"), TypeError, "use_bias must be True or False"),
    (lambda: jaxrnn.LSTM(4, initializer="glorot"), ValueError, "init='glorot' is not known"),
    (lambda: jaxrnn.LSTMFamily(4, ln_eps=0.0), ValueError, "LSTMFamily: ln_eps must be a finite "
     "number > 0"),
    (lambda: jaxrnn.LSTMFamily(-1), ValueError, "LSTMFamily: hidden_size must be a positive"),
    (lambda: jaxrnn.GRU(-3), ValueError, "GRU: hidden_size must be a positive integer; got -3"),
    (lambda: jaxrnn.GRU(4, param_dtype=jnp.int32), TypeError, "GRU: param_dtype"),
    (lambda: jaxrnn.Elman(0), ValueError, "Elman: hidden_size must be a positive integer"),
    (lambda: jaxrnn.MGU(2.0), ValueError, "MGU: hidden_size must be a positive integer; got 2.0"),
    (lambda: jaxrnn.MinGRU(0), ValueError, "MinGRU: hidden_size must be a positive integer"),
    (lambda: jaxrnn.MinLSTM(4, param_dtype="int32"), TypeError, "MinLSTM: param_dtype='int32'"),
    (lambda: jaxrnn.LRU(4, state_size=0), ValueError, "LRU: state_size must be a positive integer"),
    (lambda: jaxrnn.LRU(4, max_phase=-1.0), ValueError, "LRU: max_phase must be a finite number"),
    (lambda: jaxrnn.RGLRU(4, a_min=0.99, a_max=0.9), ValueError, "RGLRU: need 0 < a_min < a_max"),
    (lambda: jaxrnn.RGLRU(4, c=0.0), ValueError, "RGLRU: c must be a finite number > 0"),
    (lambda: jaxrnn.Uniform(-0.1), ValueError, "Uniform: scale must be a finite number > 0"),
    (lambda: jaxrnn.Orthogonal(gain=0), ValueError, "Orthogonal: gain must be a finite number"),
    (lambda: jaxrnn.StackedRNN(jaxrnn.LSTM(4), dropout=1.5), ValueError,
     r"StackedRNN: dropout must lie in \[0, 1\); got 1.5"),
    (lambda: jaxrnn.StackedRNN(jaxrnn.LSTM(4), unroll=0), ValueError,
     "StackedRNN: unroll must be a positive integer; got 0"),
    (lambda: jaxrnn.StackedRNN(jaxrnn.LSTM(4), strategy="fast"), ValueError,
     "StackedRNN: strategy='fast'; expected one of auto, in_loop"),
    (lambda: jaxrnn.StackedRNN(jaxrnn.LSTM(4), bidirectional=1), TypeError,
     "StackedRNN: bidirectional must be True or False"),
    (lambda: LanguageModel(0, STACK, 4), ValueError,
     "LanguageModel: vocab_size must be a positive integer; got 0"),
    (lambda: LanguageModel(-3, STACK, 4), ValueError,
     "LanguageModel: vocab_size must be a positive integer; got -3"),
    (lambda: LanguageModel(10, STACK, 0), ValueError, "LanguageModel: embed_size must be a posit"),
    (lambda: LanguageModel(10, STACK, 4, dropout=1.5), ValueError,
     r"LanguageModel: dropout must lie in \[0, 1\); got 1.5"),
    (lambda: LanguageModel(10, STACK, 4, dropout=-0.1), ValueError, "dropout must lie in"),
    (lambda: LanguageModel(10, STACK, 4, init_scale=0.0), ValueError,
     "LanguageModel: init_scale must be a finite number > 0; got 0.0"),
    (lambda: LanguageModel(10, jaxrnn.LSTM(4), 4), TypeError,
     "LanguageModel: rnn is LSTM; expected a jaxrnn.StackedRNN"),
    (lambda: LanguageModel(10, STACK, 4, id_checks="clip"), ValueError,
     "id_checks='clip'; expected 'nan' or 'checkify'"),
]


@pytest.mark.parametrize("build,error,message", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_are_rejected_at_construction(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_good_hyperparameters_still_build():
    jaxrnn.LSTM(np.int64(4), proj_size=np.int32(2), param_dtype="float32",
                compute_dtype=jnp.bfloat16)
    jaxrnn.LRU(4, state_size=None)
    LanguageModel(10, STACK, 4, dropout=0, init_scale=0.1)


@pytest.mark.parametrize("cell", [jaxrnn.LSTM(4), jaxrnn.GRU(4), jaxrnn.Elman(4), jaxrnn.MGU(4),
                                  jaxrnn.MinGRU(4), jaxrnn.LRU(4), jaxrnn.RGLRU(4),
                                  jaxrnn.LSTMFamily(4)])
def test_init_with_a_non_key_names_the_key(cell):
    name = type(cell).__name__
    with pytest.raises(TypeError, match=rf"{name}.init: key is int 0; expected one PRNG key"):
        cell.init(0, 3)
    with pytest.raises(TypeError, match=r"key is an array of shape \(3,\) and dtype uint32"):
        cell.init(jnp.zeros(3, jnp.uint32), 3)
    cell.init(jax.random.key(0), 3)  # typed keys work


def test_layer_and_model_init_check_the_key():
    with pytest.raises(TypeError, match="StackedRNN.init: key is int 0"):
        STACK.init(0, 3)
    with pytest.raises(TypeError, match="LanguageModel.init: key is float 1.5"):
        LanguageModel(10, STACK, 4).init(1.5)


def test_torch_tensors_into_torch_like_apply_are_a_clear_error():
    model, params = from_torch(torch.nn.GRU(3, 4))
    x = torch.zeros(5, 2, 3)
    with pytest.raises(TypeError, match=r"TorchLikeRNN.apply: x holds a torch.Tensor; expected "
                                        r"JAX or NumPy arrays. Convert with jnp.asarray"):
        model.apply(params, x)
    with pytest.raises(TypeError, match="initial_state holds a torch.Tensor"):
        model.apply(params, x.numpy(), torch.zeros(1, 2, 4))
    with pytest.raises(TypeError, match="lengths holds a torch.Tensor"):
        model.apply(params, x.numpy(), lengths=torch.tensor([5, 3]))
    out, _ = model.apply(params, x.numpy(), lengths=np.array([5, 3]))
    assert out.shape == (5, 2, 4)
