"""``jaxrnn.tuning.per_platform``: each platform's variant is traced when the program is lowered,
and only for the platforms it is lowered for; eagerly, differentiated and vmapped it computes
the variant of the platform it runs on."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.tuning import per_platform


def counting(traced: list[str]):
    """A ``make`` whose CPU variant doubles and whose other variant triples; each variant
    appends its name to ``traced`` every time it is traced."""
    def cpu(x):
        traced.append("cpu")
        return 2.0 * x

    def other(x):
        traced.append("default")
        return 3.0 * x

    return lambda platform: cpu if platform == "cpu" else other


def shape_of(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def f(make, x):
    return per_platform(make, x, out_shape=shape_of)


@pytest.mark.parametrize("platforms, expected", [
    (("cpu",), ["cpu"]),
    (("cuda",), ["default"]),
    (("tpu",), ["default"]),
    (("cpu", "cuda", "tpu"), ["cpu", "default"]),  # one trace per distinct variant
])
def test_lowering_traces_only_the_lowered_platforms_variants(platforms, expected):
    traced = []
    x = jax.ShapeDtypeStruct((3,), jnp.float32)
    jitted = jax.jit(lambda x: f(counting(traced), x))
    jitted.trace(x)
    assert traced == []  # staged out: nothing traced before lowering
    exported = jax.export.export(jitted, platforms=platforms)(x)
    assert sorted(traced) == sorted(expected)
    module = exported.mlir_module()
    assert ("2.000000e+00" in module) == ("cpu" in platforms)
    assert ("3.000000e+00" in module) == (platforms != ("cpu",))


def test_eager_jit_vmap_and_grad_compute_the_running_platforms_variant():
    traced = []
    make = counting(traced)
    x = jnp.arange(3.0)
    np.testing.assert_array_equal(f(make, x), 2.0 * x)  # eagerly: this CPU's variant
    np.testing.assert_array_equal(jax.jit(lambda x: f(make, x))(x), 2.0 * x)
    batched = jax.jit(jax.vmap(lambda x: f(make, x)))(jnp.stack([x, x + 1]))
    np.testing.assert_array_equal(batched, 2.0 * jnp.stack([x, x + 1]))
    traced.clear()
    grad = jax.jit(jax.grad(lambda x: jnp.sum(f(make, x) ** 2)))(x)
    np.testing.assert_allclose(grad, 8.0 * x)
    assert sorted(set(traced)) == ["cpu", "default"]  # differentiated: every variant linearized


def counting_vjp(calls: dict[str, int]):
    """A ``make`` whose variants (``sin(x)`` scaled by 2 on a CPU, by 3 elsewhere) have
    hand-written backward passes that count how often each is traced."""
    def variant(name, scale):
        @jax.custom_vjp
        def fn(x):
            return scale * jnp.sin(x)

        def fwd(x):
            return fn(x), jnp.cos(x)

        def bwd(cos, ct):
            calls[name] += 1
            return (scale * cos * ct,)

        fn.defvjp(fwd, bwd)
        return fn

    cpu, other = variant("cpu", 2.0), variant("default", 3.0)
    return lambda platform: cpu if platform == "cpu" else other


@pytest.mark.parametrize("platforms, expected", [
    (("cpu",), {"cpu": 1, "default": 0}),
    (("cuda",), {"cpu": 0, "default": 1}),
    (("cpu", "cuda", "tpu"), {"cpu": 1, "default": 1}),
])
def test_reverse_mode_traces_a_backward_pass_only_for_the_lowered_platforms(platforms, expected):
    calls = {"cpu": 0, "default": 0}
    x = jax.ShapeDtypeStruct((3,), jnp.float32)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(f(counting_vjp(calls), x))))
    grad.trace(x)
    assert calls == {"cpu": 0, "default": 0}  # the backward passes are staged out
    module = jax.export.export(grad, platforms=platforms)(x).mlir_module()
    assert calls == expected
    assert ("2.000000e+00" in module) == ("cpu" in platforms)
    assert ("3.000000e+00" in module) == (platforms != ("cpu",))


def test_higher_order_and_batched_derivatives_are_the_running_platforms():
    """grad of grad, forward over reverse (``jax.hessian``), vmap of grad and grad of vmap,
    with an integer input and output passing through: the CPU variant's derivatives."""
    def make(platform):
        scale = 2.0 if platform == "cpu" else 3.0
        return lambda x, n: (scale * jnp.sin(x) * n.astype(x.dtype), n + 1)

    def g(x):
        y, n = per_platform(make, x, jnp.int32(2))
        assert n.dtype == jnp.int32
        return jnp.sum(y)

    x = jnp.linspace(0.1, 1.0, 3)
    np.testing.assert_allclose(jax.jit(jax.grad(g))(x), 4.0 * jnp.cos(x), rtol=1e-6)
    second = jax.jit(jax.grad(lambda x: jnp.sum(jax.grad(g)(x))))(x)
    np.testing.assert_allclose(second, -4.0 * jnp.sin(x), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.hessian(g))(x), jnp.diag(-4.0 * jnp.sin(x)),
                               rtol=1e-6, atol=1e-7)
    batch = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(g)))(batch), 4.0 * jnp.cos(batch),
                               rtol=1e-6)
    summed = jax.jit(jax.grad(lambda b: jnp.sum(jax.vmap(g)(b))))(batch)
    np.testing.assert_allclose(summed, 4.0 * jnp.cos(batch), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(g)(x), 4.0 * jnp.cos(x), rtol=1e-6)  # eagerly


def test_out_shape_must_match_every_variant():
    def same(x):
        return x

    def shorter(x):
        return x[:2]

    def make(platform):
        return same if platform == "cpu" else shorter

    x = jnp.arange(3.0)
    with pytest.raises(TypeError, match=r"the 'cuda/rocm/tpu/default' variant "
                       r"returned .*\(2,\).*\(3,\)"):
        jax.export.export(jax.jit(lambda x: f(make, x)), platforms=("cuda",))(x)
    np.testing.assert_array_equal(jax.jit(lambda x: f(make, x))(x), x)  # the CPU's one fits


def test_pytrees_and_absent_leaves_pass_through():
    def make(platform):
        scale = 2.0 if platform == "cpu" else 3.0
        return lambda tree, none: {"a": tree["a"] * scale, "b": (tree["b"], none)}

    tree = {"a": jnp.ones(2), "b": jnp.zeros((), jnp.int32)}
    out = jax.jit(lambda t: per_platform(make, t, None))(tree)
    np.testing.assert_array_equal(out["a"], 2.0 * jnp.ones(2))
    assert out["b"][1] is None and out["b"][0].dtype == jnp.int32


def test_scan_inference_lowers_one_strategy_per_platform():
    """Forward-only jaxrnn.scan at a shape where the CPU and the GPU choose differently: the
    CPU-traced cuda module holds the fused forward (one projection of all steps), the cpu
    module the in-loop one; neither holds the other's."""
    b, t, d, h = 64, 5, 3, 8  # above the CPU's fused GRU batch (32)
    cell = jaxrnn.GRU(h)
    params = cell.init(jax.random.PRNGKey(0), d)
    xs = jnp.ones((b, t, d))
    fn = jax.jit(lambda p, x: jaxrnn.scan(cell, p, x)[0])

    def module(platforms):
        text = jax.export.export(fn, platforms=platforms)(params, xs).mlir_module()
        return re.sub(r"loc\([^)]*\)", "", text)

    projection = f"tensor<{t}x{b}x{3 * h}xf32>"
    assert projection in module(("cuda",))
    assert projection not in module(("cpu",))
    assert projection in module(("cpu", "cuda"))
    np.testing.assert_allclose(fn(params, xs), jaxrnn.scan(cell, params, xs, strategy="fused")[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, batch, one", [(jaxrnn.GRU, 64, True), (jaxrnn.GRU, 256, True),
                                              (jaxrnn.LSTM, 256, False), (jaxrnn.MinGRU, 8, False)])
def test_a_training_step_traces_one_strategy_where_the_platforms_agree(make, batch, one):
    """Differentiated, "auto" reads the table's ``_grad`` entries: where every platform makes the
    same choice (the GRU fuses at any batch) a training step holds no staged choice and nothing
    is traced twice; the LSTM above the CPU's batch of 128 and a cell without a fused kernel
    train in_loop on a CPU and fused / hoisted elsewhere, staged. The forward pass differs in
    all of them."""
    cell = make(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jnp.ones((batch, 5, 3))
    grad = jax.grad(lambda p, x: jnp.sum(jaxrnn.scan(cell, p, x)[0] ** 2))
    assert ("jaxrnn_per_platform" not in str(jax.make_jaxpr(grad)(params, xs))) == one
    forward = str(jax.make_jaxpr(lambda p, x: jaxrnn.scan(cell, p, x))(params, xs))
    assert "jaxrnn_per_platform" in forward


def test_a_cpu_training_step_is_the_cpu_variants_program():
    """minGRU trains in_loop on a CPU and hoisted elsewhere: the CPU module of its training step
    has no platform branch (reverse mode through jax.lax.platform_dependent would leave one),
    compiles to the memory footprint of in_loop alone (the hoisted variant's residual slots,
    zeros on a CPU, are removed) and gives in_loop's gradients."""
    cell = jaxrnn.MinGRU(4)
    params = cell.init(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(jax.random.PRNGKey(1), (8, 5, 3))

    def step(strategy):
        return jax.jit(jax.value_and_grad(
            lambda p, x: jnp.sum(jaxrnn.scan(cell, p, x, strategy=strategy)[0] ** 2)))

    lowered = step("auto").lower(params, xs)
    assert "jaxrnn_per_platform" in str(jax.make_jaxpr(step("auto"))(params, xs))
    assert "stablehlo.case" not in lowered.as_text()
    memory = lowered.compile().memory_analysis()
    alone = step("in_loop").lower(params, xs).compile().memory_analysis()
    assert memory.temp_size_in_bytes == alone.temp_size_in_bytes
    value, grads = step("auto")(params, xs)
    want_value, want = step("in_loop")(params, xs)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads, want)


def test_always_differentiate_leaves_the_gradients_and_checks_its_positions():
    """A marked argument is linearized in even where nothing differentiated reaches it (a
    scan's initial carry); gradients are those of the running platform's variant, and the
    marked argument gets none it did not have."""
    def make(platform):
        scale = 2.0 if platform == "cpu" else 3.0

        def run(w, h0):
            return jax.lax.scan(lambda h, x: (jnp.tanh(w * h + x), h), h0, jnp.arange(4.0))

        return lambda w, h0: jax.tree.map(lambda a: scale * a, run(w, h0))

    def loss(w, h0, marked):
        final, ys = per_platform(make, w, h0, always_differentiate=marked)
        return jnp.sum(ys) + final

    def cpu_loss(w, h0):
        final, ys = make("cpu")(w, h0)
        return jnp.sum(ys) + final

    w, h0 = jnp.float32(0.3), jnp.float32(0.0)
    want = jax.grad(cpu_loss)(w, h0)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda w: loss(w, h0, ())))(w), want, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda w: loss(w, h0, (1,))))(w), want,
                               rtol=1e-6)
    both = jax.jit(jax.grad(lambda w, h: loss(w, h, (1,)), argnums=(0, 1)))(w, h0)
    want_both = jax.grad(cpu_loss, argnums=(0, 1))(w, h0)
    np.testing.assert_allclose(both, want_both, rtol=1e-6)
    with pytest.raises(ValueError, match=r"always_differentiate=\(2,\); expected positions of "
                                         r"the 2 args"):
        loss(w, h0, (2,))

    def backward_outputs(marked):  # the staged backward pass returns one cotangent per input
        jaxpr = jax.make_jaxpr(jax.grad(lambda w: loss(w, h0, marked)))(w).jaxpr
        staged = [e for e in jaxpr.eqns if e.primitive.name == "jaxrnn_per_platform"]
        return len(staged[-1].outvars)

    assert backward_outputs(()) == 1 and backward_outputs((1,)) == 2


def test_reverse_mode_under_shard_map_keeps_the_varying_axes():
    """Inside ``jax.shard_map`` (varying manual axes checked), variants with different residuals
    differentiate to the CPU variant's gradient, and export for other platforms."""
    mesh = jax.make_mesh((1,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
    cpu = lambda x: 2.0 * jnp.sin(x)  # noqa: E731
    other = lambda x: jnp.sin(x) * jnp.exp(x) * jnp.tanh(x)  # noqa: E731 (more residuals)

    def g(x):
        return per_platform(lambda p: cpu if p == "cpu" else other, x)

    sharded = jax.shard_map(g, mesh=mesh, in_specs=jax.P("x"), out_specs=jax.P("x"))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(sharded(x) ** 2)))
    x = jnp.linspace(0.1, 1.0, 4)
    np.testing.assert_allclose(grad(x), jax.grad(lambda x: jnp.sum(cpu(x) ** 2))(x), rtol=1e-6)
    jax.export.export(grad, platforms=("cpu", "cuda"))(x)
