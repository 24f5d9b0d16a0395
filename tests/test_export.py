"""Every accelerator path lowered on this CPU with ``jax.export`` (nothing runs on a device).

A module exported for ``cuda`` or ``tpu`` must carry that platform's choices (the per-platform
table of :mod:`jaxrnn.tuning`), whatever machine traces it: it does not change when
``jax.default_backend()`` reports "gpu" or "tpu", and a multi-platform export lowers for all.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import distributed, train

PLATFORM_SETS = [("cuda",), ("tpu",), ("cpu", "cuda", "tpu")]
STRATEGIES = ["auto", "in_loop", "hoisted", "fused", "cudnn"]
CELLS = {"lstm": jaxrnn.LSTM, "gru": jaxrnn.GRU}
B, T, D, H = 64, 5, 3, 8  # B = 64: above the CPU's fused GRU limit (32), so "auto" differs


def text(exported) -> str:
    """The module's text without source locations."""
    lines = [line for line in exported.mlir_module().splitlines() if not line.startswith("#loc")]
    return re.sub(r"\s*loc\([^)]*\)", "", "\n".join(lines))


def scan_loss(cell, strategy):
    lengths = jnp.array([T, 3, 0, 1] * (B // 4), jnp.int32)

    def loss(params, xs):
        ys, final = jaxrnn.scan(cell, params, xs, lengths=lengths, reverse=True,
                                strategy=strategy)
        return jnp.sum(ys ** 2) + sum(jnp.sum(f) for f in jax.tree.leaves(final))

    return jax.jit(jax.value_and_grad(loss))


def example(name, dtype=None):
    cell = CELLS[name](H, compute_dtype=dtype)
    params = cell.init(jax.random.PRNGKey(0), D)
    return cell, params, jnp.ones((B, T, D))


@pytest.mark.parametrize("platforms", PLATFORM_SETS, ids="+".join)
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_scan_value_and_grad_exports(platforms, name, strategy):
    for dtype in (None, jnp.bfloat16):
        cell, params, xs = example(name, dtype)
        exported = jax.export.export(scan_loss(cell, strategy), platforms=platforms)(params, xs)
        assert exported.platforms == platforms
        module = text(exported)
        # the CPU's row-major weight-gradient copy never reaches a GPU or TPU lowering
        if platforms != ("cpu", "cuda", "tpu"):
            assert "optimization_barrier" not in module


def _hoisted_projection(module: str, gates: int) -> bool:
    """The fused path's one projection of all time steps, [T, B, gates*H] (time-major)."""
    return f"tensor<{T}x{B}x{gates * H}xf32>" in module


@pytest.mark.parametrize("name", CELLS)
def test_auto_carries_each_platforms_choice(name):
    """At B = 64 "auto" runs the GRU's forward pass in_loop on a CPU and fused on GPUs and TPUs
    (the LSTM fuses everywhere): a forward module exported for cuda from this CPU holds the
    GPU choice. A training step fuses on every platform, so its single-platform modules hold
    no platform conditional."""
    cell, params, xs = example(name)
    gates = 4 if name == "lstm" else 3
    forward = jax.jit(lambda p, x: jaxrnn.scan(cell, p, x)[0])
    cpu = text(jax.export.export(forward, platforms=("cpu",))(params, xs))
    cuda = text(jax.export.export(forward, platforms=("cuda",))(params, xs))
    assert _hoisted_projection(cuda, gates)
    assert _hoisted_projection(cpu, gates) == (name == "lstm")
    both = text(jax.export.export(forward, platforms=("cpu", "cuda"))(params, xs))
    assert _hoisted_projection(both, gates)
    train_step = scan_loss(cell, "auto")
    for platforms in (("cpu",), ("cuda",), ("tpu",)):
        module = text(jax.export.export(train_step, platforms=platforms)(params, xs))
        assert _hoisted_projection(module, gates)
        assert "stablehlo.case" not in module


@pytest.mark.parametrize("platform, reported", [("cuda", "gpu"), ("tpu", "tpu")])
@pytest.mark.parametrize("strategy", ["auto", "fused", "cudnn"])
def test_module_does_not_depend_on_the_tracing_backend(platform, reported, strategy,
                                                       monkeypatch):
    cell, params, xs = example("gru")
    fn = scan_loss(cell, strategy)
    jax.clear_caches()
    plain = text(jax.export.export(fn, platforms=(platform,))(params, xs))
    monkeypatch.setattr(jax, "default_backend", lambda: reported)
    jax.clear_caches()  # jit's trace cache does not key on the backend
    patched = text(jax.export.export(scan_loss(cell, strategy), platforms=(platform,))(
        params, xs))
    jax.clear_caches()
    assert plain == patched


@pytest.mark.parametrize("platforms", PLATFORM_SETS, ids="+".join)
def test_parallel_scan_and_stack_with_dropout_export(platforms):
    cell = jaxrnn.MinGRU(H)
    params = cell.init(jax.random.PRNGKey(0), D)
    xs = jnp.ones((2, T, D))
    lengths = jnp.array([T, 2])
    fn = jax.jit(jax.value_and_grad(
        lambda p, x: jnp.sum(jaxrnn.associative_scan(cell, p, x, lengths=lengths)[0])))
    jax.export.export(fn, platforms=platforms)(params, xs)

    stack = jaxrnn.StackedRNN(jaxrnn.LSTM(H), num_layers=2, dropout=0.3)
    sp = stack.init(jax.random.PRNGKey(1), D)

    def stack_loss(p, x, key):
        ys, _ = stack.apply(p, x, key=key, train=True)
        return jnp.sum(ys)

    jax.export.export(jax.jit(jax.value_and_grad(stack_loss)), platforms=platforms)(
        sp, xs, jax.random.PRNGKey(2))


def _lm_state(vocab=20, batch=4):
    rnn = jaxrnn.StackedRNN(jaxrnn.LSTM(H), num_layers=2, dropout=0.2)
    model = jaxrnn.LanguageModel(vocab, rnn, embed_size=H, dropout=0.2)
    params = model.init(jax.random.PRNGKey(0))
    optimizer = optax.chain(optax.clip_by_global_norm(5.0), optax.sgd(1.0))
    state = train.TrainState.create(params, optimizer, seed=0,
                                    carry=model.initial_state(params, batch))

    def loss_fn(p, carry, batch, key):
        x, y = batch
        loss, (carry, nll_sum) = model.loss(p, x, y, carry, key=key, train=True)
        return loss, (carry, {"loss": nll_sum / x.size})

    def eval_fn(p, carry, batch):
        x, y = batch
        _, (carry, nll_sum) = model.loss(p, x, y, carry)
        return carry, {"loss_sum": nll_sum, "count": jnp.asarray(x.size, jnp.float32)}

    tokens = jnp.zeros((batch, 7), jnp.int32)
    return state, optimizer, loss_fn, eval_fn, (tokens, tokens)


@pytest.mark.parametrize("platforms", PLATFORM_SETS, ids="+".join)
def test_language_model_train_and_eval_steps_export(platforms):
    state, optimizer, loss_fn, eval_fn, batch = _lm_state()
    step = train.make_train_step(loss_fn, optimizer, donate=False)
    jax.export.export(step, platforms=platforms)(state, batch)
    evaluate = train.make_eval_step(eval_fn)
    jax.export.export(evaluate, platforms=platforms)(state.params, state.carry, batch)


@pytest.mark.parametrize("platforms", [("cuda",), ("tpu",)], ids="+".join)
def test_sharded_train_step_exports_on_an_abstract_mesh(platforms):
    mesh = jax.sharding.AbstractMesh((4,), ("batch",))
    state, optimizer, loss_fn, _, batch = _lm_state(batch=8)
    batch = tuple(jnp.zeros((8, 7), jnp.int32) for _ in batch)
    step = distributed.make_train_step(loss_fn, optimizer, mesh)
    spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), (state, batch))
    exported = jax.export.export(step.jitted(state), platforms=platforms)(*spec)
    assert exported.nr_devices == 4
    module = exported.mlir_module()
    # the batch (and the per-example carry) split along the mesh axis, the rest replicated
    assert '{"batch"}' in module
    with pytest.raises(TypeError, match="AbstractMesh has no devices"):
        step(state, batch)
