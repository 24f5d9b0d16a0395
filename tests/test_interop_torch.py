"""jaxrnn.interop.torch: parity with torch.nn.RNN/LSTM/GRU (outputs, final states, gradients).

The options (cell kind, num_layers, bidirectional, bias, batch_first, lengths, initial state) are
covered pairwise: :func:`pairwise_design` builds a small list of configurations in which every
pair of option values appears at least once, instead of the full product (240 configurations).
"""

from __future__ import annotations

import functools
import itertools
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxrnn import GRU, LSTM, StackedRNN  # noqa: E402
from jaxrnn.interop import TorchLikeRNN, from_torch, to_torch  # noqa: E402

FACTORS = {
    "kind": ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"],
    "num_layers": [1, 2, 3],
    "bidirectional": [False, True],
    "bias": [True, False],
    "batch_first": [False, True],
    "lengths": [False, True],
    "initial_state": [False, True],
}

INPUT_SIZE, HIDDEN, PROJ, STEPS, BATCH = 5, 12, 7, 9, 4


def pairwise_design(factors: dict[str, list]) -> list[dict]:
    """A greedy covering array of strength 2: every pair of values of two factors appears in
    some row. Deterministic: each row starts from the first uncovered pair and fills the other
    factors with the value covering the most still-uncovered pairs (first value on ties)."""
    names = list(factors)

    def pairs_of(row):
        return {
            ((a, row[a]), (b, row[b]))
            for a, b in itertools.combinations(names, 2)
            if a in row and b in row
        }

    uncovered = {
        ((a, va), (b, vb))
        for a, b in itertools.combinations(names, 2)
        for va in factors[a]
        for vb in factors[b]
    }
    rows = []
    while uncovered:
        (a, va), (b, vb) = min(
            uncovered, key=lambda p: (names.index(p[0][0]), names.index(p[1][0]),
                                      factors[p[0][0]].index(p[0][1]),
                                      factors[p[1][0]].index(p[1][1]))
        )
        row = {a: va, b: vb}
        for name in names:
            if name not in row:
                row[name] = max(
                    factors[name],
                    key=lambda v, name=name: (
                        len(pairs_of({**row, name: v}) & uncovered),
                        -factors[name].index(v),
                    ),
                )
        row = {name: row[name] for name in names}
        uncovered -= pairs_of(row)
        rows.append(row)
    return rows


PAIRWISE = pairwise_design(FACTORS)
# Pairs leave some triples out; add the one with the most moving parts (projection, both
# directions, lengths and an initial state at once).
EXTRA = [dict(kind="lstm_proj", num_layers=2, bidirectional=True, bias=True, batch_first=False,
              lengths=True, initial_state=True)]
DESIGN = PAIRWISE + EXTRA


def config_id(config: dict) -> str:
    return "-".join([
        config["kind"], f"L{config['num_layers']}", "bi" if config["bidirectional"] else "uni",
        "bias" if config["bias"] else "nobias", "bf" if config["batch_first"] else "tm",
        "len" if config["lengths"] else "full", "h0" if config["initial_state"] else "zero",
    ])


def test_design_covers_every_pair_in_few_configurations():
    for a, b in itertools.combinations(FACTORS, 2):
        seen = {(row[a], row[b]) for row in PAIRWISE}
        assert seen == set(itertools.product(FACTORS[a], FACTORS[b])), (a, b)
    assert 15 <= len(PAIRWISE) <= 18  # 15 = |kind| * |num_layers|, the least possible


def make_module(config: dict, seed: int) -> torch.nn.RNNBase:
    torch.manual_seed(seed)
    kind = config["kind"]
    kwargs = dict(
        input_size=INPUT_SIZE, hidden_size=HIDDEN, num_layers=config["num_layers"],
        bias=config["bias"], batch_first=config["batch_first"],
        bidirectional=config["bidirectional"],
        # carried over as a setting; inactive in eval mode
        dropout=0.3 if config["num_layers"] > 1 else 0.0,
    )
    if kind.startswith("rnn"):
        module = torch.nn.RNN(nonlinearity=kind.removeprefix("rnn_"), **kwargs)
    elif kind.startswith("lstm"):
        module = torch.nn.LSTM(proj_size=PROJ if kind == "lstm_proj" else 0, **kwargs)
    else:
        module = torch.nn.GRU(**kwargs)
    return module.eval()


def state_shapes(module, batch: tuple[int, ...] = (BATCH,)) -> list[tuple[int, ...]]:
    rows = module.num_layers * (2 if module.bidirectional else 1)
    h_size = module.proj_size or module.hidden_size
    shapes = [(rows, *batch, h_size)]
    if isinstance(module, torch.nn.LSTM):
        shapes.append((rows, *batch, module.hidden_size))
    return shapes


def torch_run(module, x, state, lengths, out_weight, state_weights):
    """Forward + backward in PyTorch; returns numpy outputs, final states and gradients."""
    x_t = torch.tensor(x, requires_grad=True)
    state_t = None if state is None else [torch.tensor(s, requires_grad=True) for s in state]
    module.zero_grad()
    hx = None
    if state_t is not None:
        hx = tuple(state_t) if isinstance(module, torch.nn.LSTM) else state_t[0]
    if lengths is None:
        out, final = module(x_t, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x_t, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False
        )
        packed_out, final = module(packed, hx)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            packed_out, batch_first=module.batch_first,
            total_length=x.shape[1 if module.batch_first else 0],
        )
    finals = list(final) if isinstance(final, tuple) else [final]
    loss = (out * torch.tensor(out_weight)).sum()
    for f, w in zip(finals, state_weights, strict=True):
        loss = loss + (f * torch.tensor(w)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return {
        "out": out.detach().numpy(),
        "finals": [f.detach().numpy() for f in finals],
        "grad_params": grads,
        "grad_x": x_t.grad.numpy(),
        "grad_state": None if state_t is None else [s.grad.numpy() for s in state_t],
    }


@functools.partial(jax.jit, static_argnums=0)
def jax_run(model, params, x, state, lengths, out_weight, state_weights):
    """Forward + jax.grad of the same loss through model.apply (one compilation per model)."""

    def loss_fn(params, x, state):
        out, final = model.apply(params, x, state, lengths)
        finals = list(final) if isinstance(final, tuple) else [final]
        loss = jnp.sum(out * out_weight)
        for f, w in zip(finals, state_weights, strict=True):
            loss = loss + jnp.sum(f * w)
        return loss, (out, finals)

    (_, (out, finals)), grads = jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True)(
        params, x, state
    )
    return out, finals, grads


_TORCH_NAME = re.compile(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")


def jax_grad_of(grad_params, torch_name: str):
    kind, part, layer, reverse = _TORCH_NAME.match(torch_name).groups()
    key = ("w_" if kind == "weight" else "b_") + part
    return grad_params["layers"][int(layer)]["bwd" if reverse else "fwd"][key]


def assert_close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-5, atol=1e-5, err_msg=what)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("config", DESIGN, ids=config_id)
def test_parity_with_torch(config):
    seed = DESIGN.index(config)
    module = make_module(config, seed)
    model, params = from_torch(module)
    rng = np.random.default_rng(seed)
    bf = config["batch_first"]
    x_shape = (BATCH, STEPS, INPUT_SIZE) if bf else (STEPS, BATCH, INPUT_SIZE)
    x = rng.standard_normal(x_shape).astype(np.float32)
    shapes = state_shapes(module)
    state = None
    if config["initial_state"]:
        state = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    # unsorted, with the extremes 1 and T (PyTorch rejects a length of 0; tested separately)
    lengths = np.array([STEPS, 1, 5, 8], np.int64)[:BATCH] if config["lengths"] else None
    out_size = (PROJ if config["kind"] == "lstm_proj" else HIDDEN) * (
        2 if config["bidirectional"] else 1
    )
    out_shape = (*x_shape[:2], out_size)
    out_weight = rng.standard_normal(out_shape).astype(np.float32)
    state_weights = [rng.standard_normal(s).astype(np.float32) for s in shapes]

    expected = torch_run(module, x, state, lengths, out_weight, state_weights)

    jax_state = None
    if state is not None:
        jax_state = tuple(jnp.asarray(s) for s in state) if len(state) == 2 else jnp.asarray(
            state[0]
        )
    out, finals, (g_params, g_x, g_state) = jax_run(
        model, params, jnp.asarray(x), jax_state,
        None if lengths is None else jnp.asarray(lengths, jnp.int32),
        jnp.asarray(out_weight), [jnp.asarray(w) for w in state_weights],
    )
    assert out.shape == out_shape
    assert_close(out, expected["out"], "output")
    if lengths is not None:
        time = np.arange(STEPS)[None, :] if bf else np.arange(STEPS)[:, None]
        batch_axis_lengths = lengths[:, None] if bf else lengths[None, :]
        assert np.all(np.asarray(out)[time >= batch_axis_lengths] == 0.0)
    for got, want, name in zip(finals, expected["finals"], ["h_n", "c_n"], strict=False):
        assert got.shape == want.shape
        assert_close(got, want, name)
    assert_close(g_x, expected["grad_x"], "d loss / d x")
    if state is not None:
        g_state = list(g_state) if isinstance(g_state, tuple) else [g_state]
        for got, want, name in zip(g_state, expected["grad_state"], ["h_0", "c_0"], strict=False):
            assert_close(got, want, f"d loss / d {name}")
    names = [name for name, _ in module.named_parameters()]
    n_jax = len(jax.tree.leaves(g_params))
    assert n_jax == len(names)
    for name in names:
        want = expected["grad_params"][name]
        assert_close(jax_grad_of(g_params, name), want, f"d loss / d {name}")


@pytest.mark.parametrize("config", DESIGN, ids=config_id)
def test_round_trip_to_torch_from_torch(config):
    module = make_module(config, seed=100 + DESIGN.index(config))
    back = to_torch(*from_torch(module))
    assert type(back) is type(module)
    for attr in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "dropout", "bidirectional", "proj_size"):
        assert getattr(back, attr) == getattr(module, attr), attr
    if isinstance(module, torch.nn.RNN):
        assert back.nonlinearity == module.nonlinearity
    want, got = module.state_dict(), back.state_dict()
    assert list(got) == list(want)
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_to_torch_from_jaxrnn_initialised_params():
    model = TorchLikeRNN(StackedRNN(LSTM(8, proj_size=3), num_layers=2, bidirectional=True),
                         batch_first=True)
    params = model.init(jax.random.key(0), 5)
    module = to_torch(model, params).eval()
    x = np.random.default_rng(0).standard_normal((2, 6, 5)).astype(np.float32)
    out, (h_n, c_n) = model.apply(params, jnp.asarray(x))
    with torch.no_grad():
        t_out, (t_h, t_c) = module(torch.tensor(x))
    assert_close(out, t_out.numpy(), "output")
    assert_close(h_n, t_h.numpy(), "h_n")
    assert_close(c_n, t_c.numpy(), "c_n")


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input_as_torch(batch_first):
    torch.manual_seed(3)
    module = torch.nn.LSTM(INPUT_SIZE, HIDDEN, num_layers=2, bidirectional=True,
                           proj_size=PROJ, batch_first=batch_first).eval()
    model, params = from_torch(module)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((STEPS, INPUT_SIZE)).astype(np.float32)
    h0, c0 = (rng.standard_normal(s).astype(np.float32) for s in state_shapes(module, ()))
    out, (h_n, c_n) = model.apply(params, jnp.asarray(x), (jnp.asarray(h0), jnp.asarray(c0)))
    with torch.no_grad():
        t_out, (t_h, t_c) = module(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
    assert out.shape == (STEPS, 2 * PROJ) and h_n.shape == (4, PROJ) and c_n.shape == (4, HIDDEN)
    assert_close(out, t_out.numpy(), "output")
    assert_close(h_n, t_h.numpy(), "h_n")
    assert_close(c_n, t_c.numpy(), "c_n")


def test_length_zero_gives_zero_outputs_and_initial_state():
    """PyTorch rejects a length of 0; jaxrnn returns zero outputs and the initial state, and the
    other sequences of the batch are unaffected."""
    torch.manual_seed(4)
    module = torch.nn.GRU(INPUT_SIZE, HIDDEN, num_layers=2, bidirectional=True,
                          batch_first=True).eval()
    model, params = from_torch(module)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, STEPS, INPUT_SIZE)).astype(np.float32)
    h0 = rng.standard_normal((4, 3, HIDDEN)).astype(np.float32)
    lengths = np.array([4, 0, STEPS], np.int32)
    out, h_n = model.apply(params, jnp.asarray(x), jnp.asarray(h0), jnp.asarray(lengths))
    assert np.all(np.asarray(out)[1] == 0.0)
    np.testing.assert_array_equal(np.asarray(h_n)[:, 1], h0[:, 1])
    keep = [0, 2]
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            torch.tensor(x[keep]), torch.tensor(lengths[keep]), batch_first=True,
            enforce_sorted=False,
        )
        t_out, t_h = module(packed, torch.tensor(h0[:, keep]))
        t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True,
                                                          total_length=STEPS)
    assert_close(np.asarray(out)[keep], t_out.numpy(), "output")
    assert_close(np.asarray(h_n)[:, keep], t_h.numpy(), "h_n")


def test_dropout_is_carried_over_and_active_only_in_train_mode():
    torch.manual_seed(5)
    module = torch.nn.LSTM(INPUT_SIZE, HIDDEN, num_layers=2, dropout=0.5).eval()
    model, params = from_torch(module)
    assert model.rnn.dropout == 0.5
    x = jnp.asarray(np.random.default_rng(5).standard_normal((STEPS, 2, INPUT_SIZE)), jnp.float32)
    with torch.no_grad():
        t_out, _ = module(torch.tensor(np.asarray(x)))
    eval_out, _ = model.apply(params, x)
    assert_close(eval_out, t_out.numpy(), "eval output")
    key = jax.random.key(0)
    train_out, _ = model.apply(params, x, key=key, train=True)
    again, _ = model.apply(params, x, key=key, train=True)
    other, _ = model.apply(params, x, key=jax.random.key(1), train=True)
    assert not np.allclose(train_out, eval_out)
    np.testing.assert_array_equal(train_out, again)
    assert not np.allclose(train_out, other)
    with pytest.raises(ValueError, match="key"):
        model.apply(params, x, train=True)


def test_import_is_lazy():
    code = (
        "import sys, jaxrnn.interop; "
        "assert 'torch' not in sys.modules and 'flax' not in sys.modules, "
        "[m for m in ('torch', 'flax') if m in sys.modules]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_non_rnn_module_raises_type_error_naming_it():
    with pytest.raises(TypeError, match=r"from_torch: module is Linear; expected torch\.nn\.RNN"):
        from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="module is LSTMCell"):
        from_torch(torch.nn.LSTMCell(3, 4))


@pytest.fixture(scope="module")
def lstm_model():
    torch.manual_seed(6)
    return from_torch(torch.nn.LSTM(INPUT_SIZE, HIDDEN, num_layers=2, proj_size=PROJ))


def test_wrong_x_rank_raises_value_error(lstm_model):
    model, params = lstm_model
    x = jnp.zeros((2, 3, 4, INPUT_SIZE))
    with pytest.raises(ValueError, match=re.escape(
        "TorchLikeRNN.apply: x has shape (2, 3, 4, 5); expected [T, B, input_size] or "
        "[T, input_size] (unbatched)"
    )):
        model.apply(params, x)


def test_wrong_feature_size_raises_value_error(lstm_model):
    model, params = lstm_model
    with pytest.raises(ValueError, match=re.escape(
        "TorchLikeRNN.apply: x has shape (6, 2, 7); expected (?, ?, 5) = [T, B, input_size] "
        "with input_size=5"
    )):
        model.apply(params, jnp.zeros((6, 2, 7)))
    with pytest.raises(ValueError, match=re.escape("x has shape (6, 4); expected (?, 5)")):
        model.apply(params, jnp.zeros((6, 4)))


def test_wrong_initial_state_raises_value_error(lstm_model):
    model, params = lstm_model
    x = jnp.zeros((6, 3, INPUT_SIZE))
    h0, c0 = jnp.zeros((2, 3, PROJ)), jnp.zeros((2, 3, HIDDEN))
    with pytest.raises(ValueError, match=re.escape("expected (h_0, c_0) for an LSTM")):
        model.apply(params, x, h0)
    with pytest.raises(ValueError, match=re.escape(
        "initial_state[0] (h_0) has shape (2, 3, 12); expected (2, 3, 7)"
    )):
        model.apply(params, x, (c0, c0))
    with pytest.raises(ValueError, match=re.escape(
        "initial_state[1] (c_0) has shape (1, 3, 12); expected (2, 3, 12)"
    )):
        model.apply(params, x, (h0, c0[:1]))


def test_bad_lengths_raise_value_error(lstm_model):
    model, params = lstm_model
    x = jnp.zeros((6, 3, INPUT_SIZE))
    with pytest.raises(ValueError, match=re.escape("lengths must lie in [0, T] = [0, 6]")):
        model.apply(params, x, lengths=np.array([1, 7, 2]))
    with pytest.raises(ValueError, match=re.escape("lengths has shape (2,); expected (3,)")):
        model.apply(params, x, lengths=np.array([1, 2]))


def test_models_pytorch_cannot_express_are_rejected():
    with pytest.raises(ValueError, match="GRU reset_after=False"):
        TorchLikeRNN(StackedRNN(GRU(4, reset_after=False)))
    with pytest.raises(ValueError, match="residual=True"):
        TorchLikeRNN(StackedRNN(LSTM(4), num_layers=2, residual=True))
