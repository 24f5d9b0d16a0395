"""Gate ablation: which gate matters? Trains every recurrent-cell variant x seed on a task.

    python experiments/ablate_gates.py --smoke                          # seconds: checks the setup
    python experiments/ablate_gates.py --task adding,digits --variants all --seeds 5 \
        --out runs/ablate_gates
    python experiments/ablate_gates.py ... --resume        # after a kill: skips finished variants

Variants come from :mod:`jaxrnn.variants` (Greff et al. 2017's vanilla LSTM and its eight
variants, forget bias 1, LN-LSTM, GRU (both conventions), MGU, minGRU, minLSTM, LRU, RG-LRU). The
seeds (and search trials) of one variant are vmapped inside one jitted program: one compilation
per variant, all runs in lockstep. Seed s uses the same data stream for every variant (paired).
The linear recurrences (minGRU, minLSTM, LRU, RG-LRU) train through
:func:`jaxrnn.associative_scan`, parallel over time (``--sequential``: :func:`jaxrnn.scan`).

Tasks (``--task``, comma-separated; budgets chosen so the vanilla LSTM solves each):

- ``adding``: the adding problem (Hochreiter & Schmidhuber 1997): inputs (value ~ U(0,1),
  marker), one marker in each half of ``--seq-len`` steps; predict the sum of the two marked
  values. Test MSE; predicting the mean gives 1/6 ~ 0.167; solved below 0.01.
- ``copy``: the copy/memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): 10
  symbols of 8, ``--copy-delay`` blanks, a delimiter, then recall the 10 symbols. Accuracy on the
  recalled symbols (chance 1/8); loss on the recall positions only.
- ``digits``: scikit-learn's 8x8 handwritten digits read row by row (8 steps of 8 pixels;
  no download). Test accuracy; solved at >= 0.95.
- ``charlm``: next-character prediction, bits per character. ``--lm-corpus synthetic`` (default):
  an order-2 Markov chain over 16 symbols from :func:`jaxrnn.data.markov_corpus`, whose entropy
  rate is the floor; ``--lm-corpus ptb``: Penn Treebank's words spelled out as characters, read
  through :func:`jaxrnn.data.load_word_corpus` from ``--data-dir``.

Adding a task: write ``def my_task(args) -> Task`` (see :class:`Task`: a jittable
``sample(key, batch_size) -> Batch``, fixed ``val`` and ``test`` batches, the loss and metric)
and add it to ``TASKS``; its name is then valid for ``--task``.

Options: ``--equal-params`` picks each variant's hidden size so its parameter count (cell and
head) is closest to the vanilla LSTM's at ``--hidden``; ``--search N`` runs a random search of N
learning rates (log-uniform in ``--lr-range``, the same N values for every variant, so every
variant gets the same budget), picks the best by validation metric and reports its test metric,
as Greff et al. did (they also searched hidden size, momentum and input noise).

Output in ``--out`` (default ``runs/ablate_gates``): ``config.json`` (every setting and the
environment), ``results.json`` (per task and variant: the test metric's mean, std and values
over seeds, hidden size, parameters, lr, solved seeds, difference from vanilla and Welch's p),
``results.csv`` (task, variant, seed, metric, value, steps, wall_s,
hidden_size, num_params, lr), ``curves.csv``, ``results.md`` (per task: mean +- std over seeds,
vanilla first, Welch's t-test against vanilla), ``curves_<task>.png`` (learning curves),
``boxplot_<task>.png`` (final metric), ``gradflow_<task>.png`` (||dLoss/dh_t|| against t, at
initialisation and after training: vanishing or exploding gradients), and ``completed/``
(each finished variant, so that ``--resume`` continues with the next one).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import harness
import jaxrnn
from jaxrnn import distributed, variants
from jaxrnn.cells.base import get_field, replace_field
from jaxrnn.train.schedules import make_optimizer


class Batch(NamedTuple):
    xs: jax.Array  # [B, T, D] float32
    targets: jax.Array  # [B] (last-step tasks) or [B, T]; float32 for mse, int32 for xent
    weights: Any = None  # [B, T] float32 for per-step tasks


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: data, loss, metric and the training budget that lets the vanilla LSTM solve it."""

    name: str
    input_size: int
    output_size: int
    per_step: bool  # head on every step (copy, charlm) or on the last step only
    loss: str  # "mse" or "xent"
    metric: str  # "mse", "accuracy" or "bpc"
    higher_is_better: bool
    sample: Callable[[jax.Array, int], Batch]  # jittable
    val: Batch
    test: Batch
    steps: int
    batch_size: int
    hidden: int
    lr: float
    reference: str  # the published / expected number, printed at the end
    solved: Callable[[float], bool] | None = None  # None: no threshold (the table shows "-")


# ---------------------------------------------------------------------------------------- tasks


def adding_task(args) -> Task:
    steps_t = args.seq_len

    def sample(key, n):
        k_v, k_1, k_2 = jax.random.split(key, 3)
        values = jax.random.uniform(k_v, (n, steps_t))
        first = jax.random.randint(k_1, (n, 1), 0, steps_t // 2)
        second = jax.random.randint(k_2, (n, 1), steps_t // 2, steps_t)
        t = jnp.arange(steps_t)[None, :]
        markers = ((t == first) | (t == second)).astype(jnp.float32)
        return Batch(jnp.stack([values, markers], axis=-1), jnp.sum(values * markers, axis=1))

    return Task(
        "adding", 2, 1, False, "mse", "mse", False, sample,
        val=sample(jax.random.PRNGKey(10**6), 1000), test=sample(jax.random.PRNGKey(10**6 + 1),
                                                                  2000),
        steps=1500, batch_size=64, hidden=32, lr=1e-2,
        reference="solved below 0.01; always predicting the mean gives 1/6 = 0.167",
        solved=lambda v: v < 0.01,
    )


def copy_task(args) -> Task:
    length, symbols, delay = 10, 8, args.copy_delay
    steps_t = 2 * length + delay

    def sample(key, n):
        seq = jax.random.randint(key, (n, length), 1, symbols + 1)
        blanks = jnp.zeros((n, delay - 1), jnp.int32)
        delim = jnp.full((n, 1), symbols + 1, jnp.int32)
        tokens = jnp.concatenate([seq, blanks, delim, jnp.zeros((n, length), jnp.int32)], 1)
        targets = jnp.concatenate([jnp.zeros((n, length + delay), jnp.int32), seq], 1)
        weights = (jnp.arange(steps_t) >= length + delay).astype(jnp.float32)
        return Batch(jax.nn.one_hot(tokens, symbols + 2), targets,
                     jnp.broadcast_to(weights[None, :], (n, steps_t)))

    return Task(
        "copy", symbols + 2, symbols + 2, True, "xent", "accuracy", True, sample,
        val=sample(jax.random.PRNGKey(10**6), 500),
        test=sample(jax.random.PRNGKey(10**6 + 1), 1000),
        steps=3000, batch_size=64, hidden=64, lr=5e-3,
        reference=f"chance accuracy 1/{symbols} = {1 / symbols:.3f}; solved at >= 0.99",
        solved=lambda v: v >= 0.99,
    )


def digits_task(args) -> Task:
    from jaxrnn.data import load_digits_dataset

    data = load_digits_dataset(test_fraction=0.2, seed=0)
    train_x, train_y = data.train_x, data.train_y
    if args.search > 1:  # hold out a validation split to pick the trial, never the test set
        order = np.random.default_rng(0).permutation(len(train_x))
        held = order[: len(order) // 7]
        val = Batch(jnp.asarray(train_x[held]), jnp.asarray(train_y[held]))
        keep = order[len(order) // 7 :]
        train_x, train_y = train_x[keep], train_y[keep]
    else:
        val = Batch(jnp.asarray(data.test_x), jnp.asarray(data.test_y))
    xs, ys = jnp.asarray(train_x), jnp.asarray(train_y)

    def sample(key, n):
        idx = jax.random.randint(key, (n,), 0, xs.shape[0])
        return Batch(xs[idx], ys[idx])

    return Task(
        "digits", 8, 10, False, "xent", "accuracy", True, sample,
        val=val, test=Batch(jnp.asarray(data.test_x), jnp.asarray(data.test_y)),
        steps=1000, batch_size=64, hidden=64, lr=5e-3,
        reference="solved at >= 0.95 test accuracy (chance 0.10)",
        solved=lambda v: v >= 0.95,
    )


def _char_streams(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, str, float | None]:
    if args.lm_corpus == "synthetic":
        from jaxrnn.data import markov_corpus

        corpus, entropy = markov_corpus(16, (200_000, 20_000, 20_000), seed=0, order=2)
        floor = entropy / math.log(2)
        return (corpus.train, corpus.valid, corpus.test, 16,
                f"entropy-rate floor {floor:.3f} bits/char (order-2 Markov chain, 16 symbols); "
                "solved within 0.1 of it", floor)
    from jaxrnn.data import load_word_corpus

    corpus = load_word_corpus("ptb", args.data_dir, download=False)
    splits = ("train", "valid", "test")
    text = {s: " ".join(corpus.vocab.decode(getattr(corpus, s))) for s in splits}
    chars = sorted(set(text["train"]))
    index = {c: i for i, c in enumerate(chars)}
    streams = [np.array([index.get(c, 0) for c in text[s]], np.int32) for s in text]
    return (*streams, len(chars), "PTB characters (word-level PTB spelled out); ~1.3-1.4 bpc "
            "for large LSTMs on the standard character PTB", None)


def charlm_task(args) -> Task:
    train, valid, test, vocab, reference, floor = _char_streams(args)
    bptt = args.bptt
    stream = jnp.asarray(train)

    def windows(tokens: np.ndarray, n: int) -> Batch:
        n = min(n, (len(tokens) - 1) // bptt)
        ids = np.stack([tokens[i * bptt : i * bptt + bptt + 1] for i in range(n)])
        return Batch(jax.nn.one_hot(ids[:, :-1], vocab), jnp.asarray(ids[:, 1:]),
                     jnp.ones((n, bptt), jnp.float32))

    def sample(key, n):
        starts = jax.random.randint(key, (n,), 0, stream.shape[0] - bptt - 1)
        ids = jax.vmap(lambda s: jax.lax.dynamic_slice(stream, (s,), (bptt + 1,)))(starts)
        return Batch(jax.nn.one_hot(ids[:, :-1], vocab), ids[:, 1:],
                     jnp.ones((n, bptt), jnp.float32))

    return Task(
        "charlm", vocab, vocab, True, "xent", "bpc", False, sample,
        val=windows(valid, 200), test=windows(test, 400),
        steps=2000, batch_size=32, hidden=64, lr=5e-3, reference=reference,
        solved=None if floor is None else (lambda v: v < floor + 0.1),
    )


TASKS: dict[str, Callable[[argparse.Namespace], Task]] = {
    "adding": adding_task, "copy": copy_task, "digits": digits_task, "charlm": charlm_task,
}

# ---------------------------------------------------------------------------------------- model


def init_model(cell, task: Task, key) -> dict:
    k_cell, k_head = jax.random.split(key)
    width = jaxrnn.cells.output_size(cell, task.input_size)
    head = {"w": jax.random.normal(k_head, (task.output_size, width)) / math.sqrt(width),
            "b": jnp.zeros((task.output_size,))}
    return {"cell": cell.init(k_cell, task.input_size), "head": head}


def head_loss_metric(task: Task, params, ys, batch: Batch):
    """(loss, metric sum, metric count) from the cell outputs ys [B, T, H]."""
    feats = ys if task.per_step else ys[:, -1]
    w, b = params["head"]["w"], params["head"]["b"]
    out = jnp.einsum("...h,oh->...o", feats, w) + b.reshape((1,) * (feats.ndim - 1) + (-1,))
    if task.loss == "mse":
        err = jnp.square(out[..., 0] - batch.targets)
        return jnp.mean(err), jnp.sum(err), jnp.float32(err.size)
    logp = jax.nn.log_softmax(out)
    nll = -jnp.take_along_axis(logp, batch.targets[..., None], axis=-1)[..., 0]
    weights = jnp.ones_like(nll) if batch.weights is None else batch.weights
    count = jnp.sum(weights)
    loss = jnp.sum(nll * weights) / count
    if task.metric == "bpc":
        return loss, jnp.sum(nll * weights) / math.log(2), count
    correct = (jnp.argmax(out, axis=-1) == batch.targets).astype(jnp.float32)
    return loss, jnp.sum(correct * weights), count


def forward(cell, task: Task, params, batch: Batch, parallel: bool = True):
    """Linear-recurrence cells run through the associative scan unless ``parallel=False``."""
    run = jaxrnn.associative_scan if parallel and jaxrnn.drivers.is_linear(cell) else jaxrnn.scan
    ys, _ = run(cell, params["cell"], batch.xs)
    return head_loss_metric(task, params, ys, batch)


def grad_flow(cell, task: Task, params, batch: Batch) -> jax.Array:
    """||dLoss/dh_t|| for t = 0..T-1 (h_t: the state entering step t+1), mean over the batch.

    h_t is the carry field named by the cell's ``recurrent_mask_field`` (``h`` for the built-in
    cells), or the whole carry pytree for a cell that declares none.
    """
    xs = jnp.swapaxes(batch.xs, 0, 1)
    carry0 = cell.initial_carry(params["cell"], (xs.shape[1],))
    step = jax.vmap(cell.step, in_axes=(None, 0, 0))
    field = getattr(cell, "recurrent_mask_field", None)
    probed = carry0 if field is None else get_field(carry0, field)

    def perturb(carry, d):
        if field is None:
            return jax.tree.map(jnp.add, carry, d)
        return replace_field(carry, field, get_field(carry, field) + d)

    def loss(deltas):
        def body(carry, inp):
            x, d = inp
            return step(params["cell"], perturb(carry, d), x)

        _, ys = jax.lax.scan(body, carry0, (xs, deltas))
        return head_loss_metric(task, params, jnp.swapaxes(ys, 0, 1), batch)[0]

    zeros = jax.tree.map(lambda c: jnp.zeros((xs.shape[0], *c.shape), c.dtype), probed)
    grads = jax.grad(loss)(zeros)
    squares = sum(
        jnp.sum(jnp.square(g).reshape(g.shape[0], g.shape[1], -1), axis=-1)
        for g in jax.tree.leaves(grads)
    )
    return jnp.mean(jnp.sqrt(squares), axis=1)


# ------------------------------------------------------------------------------------- training


def make_programs(cell, task: Task, steps: int, chunk: int, batch_size: int, parallel: bool):
    """Jitted programs over R vmapped runs: train `chunk` steps, evaluate, gradient flow."""
    optimizer = make_optimizer("adam", 1.0, clip_norm=1.0)  # the per-run lr scales the update

    def one_step(params, opt_state, key, lr, step):
        batch = task.sample(jax.random.fold_in(key, step), batch_size)
        loss, grads = jax.value_and_grad(
            lambda p: forward(cell, task, p, batch, parallel)[0])(params)
        with jax.numpy_dtype_promotion("standard"):  # optax's adam is not strict-clean
            updates, opt_state = optimizer.update(grads, opt_state, params)
        progress = step.astype(jnp.float32) / steps
        scale = lr * (0.1 + 0.45 * (1.0 + jnp.cos(jnp.pi * progress)))  # cosine to lr/10
        params = jax.tree.map(lambda p, u: p + scale * u, params, updates)
        return params, opt_state, loss

    @jax.jit
    def init(keys):
        params = jax.vmap(lambda k: init_model(cell, task, k))(keys)
        with jax.numpy_dtype_promotion("standard"):
            return params, jax.vmap(optimizer.init)(params)

    @jax.jit
    def train(params, opt_state, keys, lrs, start):
        def body(carry, step):
            p, o, loss = jax.vmap(one_step, in_axes=(0, 0, 0, 0, None))(*carry, keys, lrs, step)
            return (p, o), loss

        (params, opt_state), losses = jax.lax.scan(
            body, (params, opt_state), start + jnp.arange(chunk, dtype=jnp.int32))
        return params, opt_state, jnp.mean(losses, axis=0)

    @jax.jit
    def evaluate(params, batch):
        def one(p):
            _, total, count = forward(cell, task, p, batch, parallel)
            return total / count
        return jax.vmap(one)(params)

    @jax.jit
    def flow(params, batch):
        return grad_flow(cell, task, params, batch)

    return init, train, evaluate, flow


@dataclasses.dataclass
class RunResult:
    variant: str
    hidden: int
    num_params: int
    lrs: np.ndarray  # [R]
    seeds: np.ndarray  # [R]
    trials: np.ndarray  # [R]
    val: np.ndarray  # [R]
    test: np.ndarray  # [R]
    curve_steps: list[int]
    curve_loss: list[np.ndarray]  # [R] each
    curve_test: list[np.ndarray]
    flow_init: np.ndarray  # [T]
    flow_trained: np.ndarray
    wall_s: float
    steps: int


def run_variant(name: str, hidden: int, task: Task, args, lrs: np.ndarray, log) -> RunResult:
    cell = variants.make(name, hidden)
    chunk = max(1, min(args.eval_every, args.steps))
    steps = -(-args.steps // chunk) * chunk
    num_trials, num_seeds = len(lrs), args.seeds
    seeds = np.tile(args.seed + np.arange(num_seeds), num_trials)
    trials = np.repeat(np.arange(num_trials), num_seeds)
    run_lrs = jnp.asarray(np.repeat(lrs, num_seeds), jnp.float32)
    base = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(base)
    data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(base)
    # the same init for every trial of one seed: trials differ in the learning rate only
    init, train, evaluate, flow = make_programs(cell, task, steps, chunk, args.batch_size,
                                                not args.sequential)
    start = time.perf_counter()
    params, opt_state = init(init_keys)
    probe = jax.tree.map(lambda a: a[: min(256, a.shape[0])], task.test)
    flow_init = np.asarray(flow(jax.tree.map(lambda a: a[0], params), probe))
    curve_steps, curve_loss, curve_test = [], [], []
    for done in range(chunk, steps + 1, chunk):
        params, opt_state, loss = train(params, opt_state, data_keys, run_lrs, done - chunk)
        test = np.asarray(evaluate(params, task.test))
        curve_steps.append(done)
        curve_loss.append(np.asarray(loss))
        curve_test.append(test)
        log(f"  [{task.name}] {name:8s} step {done:5d}/{steps}  loss {np.mean(loss):.4f}  "
            f"test {task.metric} {np.mean(test):.4f} (mean of {len(test)} runs)  "
            f"{time.perf_counter() - start:6.1f}s")
    val = np.asarray(evaluate(params, task.val))
    best = int(np.argmax(val) if task.higher_is_better else np.argmin(val))
    flow_trained = np.asarray(flow(jax.tree.map(lambda a: a[best], params), probe))
    wall = time.perf_counter() - start
    width = jaxrnn.cells.output_size(cell, task.input_size)
    return RunResult(name, hidden, variants.parameter_count(cell, task.input_size)
                     + task.output_size * (width + 1),
                     np.asarray(run_lrs), seeds, trials, val, curve_test[-1], curve_steps,
                     curve_loss, curve_test, flow_init, flow_trained, wall, steps)


def matched_hidden(name: str, task: Task, target: int) -> int:
    """The hidden size whose parameter count (cell + head) is closest to ``target``."""
    def count(h):
        cell = variants.make(name, h)
        return (variants.parameter_count(cell, task.input_size)
                + task.output_size * (jaxrnn.cells.output_size(cell, task.input_size) + 1))

    low, high = 1, 1
    while count(high) < target:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target else (low, mid)
    return min((low, high), key=lambda h: abs(count(h) - target))


def select_trial(result: RunResult, higher_is_better: bool) -> np.ndarray:
    """Mask of the runs of the trial with the best mean validation metric."""
    means = [np.mean(result.val[result.trials == t]) for t in np.unique(result.trials)]
    best = int(np.argmax(means) if higher_is_better else np.argmin(means))
    return result.trials == best


# -------------------------------------------------------------------------------------- reports


def welch(values: np.ndarray, reference: np.ndarray) -> float:
    from scipy import stats

    if len(values) < 2 or len(reference) < 2:
        return float("nan")
    if np.ptp(values) == 0 and np.ptp(reference) == 0:
        return 1.0 if values[0] == reference[0] else 0.0
    return float(stats.ttest_ind(values, reference, equal_var=False).pvalue)


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def table(task: Task, finals: dict[str, np.ndarray], results: dict[str, RunResult]) -> str:
    ref = finals.get("vanilla")
    better = "higher" if task.higher_is_better else "lower"
    lines = [
        f"### {task.name}: test {task.metric} ({better} is better), mean +- std over seeds",
        "",
        "| variant | hidden | params | lr | test " + task.metric
        + " | vs vanilla | p (Welch) | solved |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, values in finals.items():
        r = results[name]
        lr = float(np.unique(r.lrs[select_trial(r, task.higher_is_better)])[0])
        mark, diff, p_text = "", "", ""
        if ref is not None and name != "vanilla":
            p = welch(values, ref)
            diff = f"{np.mean(values) - np.mean(ref):+.4f}"
            worse = (np.mean(values) < np.mean(ref)) == task.higher_is_better
            stars = "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""
            mark = (" worse" if worse else " better") + stars if stars else ""
            p_text = f"{p:.3g}{mark}"
        solved = "-" if task.solved is None else (
            f"{sum(task.solved(float(v)) for v in values)}/{len(values)}")
        lines.append(f"| {name} | {r.hidden} | {r.num_params} | {lr:.3g} | "
                     f"{np.mean(values):.4f} +- {_std(values):.4f}"
                     f" | {diff} | {p_text} | {solved} |")
    lines += ["", "Welch's unequal-variance t-test against vanilla, two-sided: * p < 0.05, "
              "** p < 0.01, *** p < 0.001.", ""]
    return "\n".join(lines)


def plots(out: pathlib.Path, task: Task, results: dict[str, RunResult], finals) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    palette = plt.get_cmap("tab20").colors
    style = {n: {"color": palette[i % 20], "linestyle": "-" if i < 20 else "--"}
             for i, n in enumerate(names)}
    for name in names:
        r = results[name]
        mask = select_trial(r, task.higher_is_better)
        for ax, curve in zip(axes, (r.curve_loss, r.curve_test), strict=True):
            values = np.stack([c[mask] for c in curve])
            ax.plot(r.curve_steps, values.mean(axis=1), label=name, **style[name])
            ax.fill_between(r.curve_steps, values.min(axis=1), values.max(axis=1), alpha=0.12,
                            color=style[name]["color"])
    axes[0].set(title=f"{task.name}: training loss", xlabel="step", yscale="log")
    axes[1].set(title=f"{task.name}: test {task.metric}", xlabel="step",
                yscale="linear" if task.higher_is_better else "log")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / f"curves_{task.name}.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names)), 4.5))
    ax.boxplot([finals[n] for n in names], tick_labels=names)
    ax.set(title=f"{task.name}: final test {task.metric} over seeds", ylabel=task.metric)
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    fig.savefig(out / f"boxplot_{task.name}.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for name in names:
        r = results[name]
        for ax, flow in zip(axes, (r.flow_init, r.flow_trained), strict=True):
            ax.plot(np.arange(len(flow)), np.maximum(flow, 1e-30), label=name, **style[name])
    for ax, when in zip(axes, ("at initialisation", "after training"), strict=True):
        ax.set(title=f"{task.name}: ||dLoss/dh_t|| {when}", xlabel="t", yscale="log")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / f"gradflow_{task.name}.png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ cli

DEFAULTS: dict[str, Any] = dict(variants="all", seeds=5, steps=None, batch_size=None,
                                hidden=None, eval_every=250, seq_len=50)
"""Values of the flags below when not given (``None``: the task's own budget)."""
SMOKE: dict[str, Any] = dict(variants="vanilla,nfg,mingru", seeds=2, steps=20, batch_size=16,
                             hidden=8, eval_every=10, seq_len=10)
"""``--smoke``: a seconds-long check; flags given on the command line win."""
NOT_COMPARED = ("smoke", "data_dir", *harness.DEVICE_FLAGS)


def _default_help(name: str, default: str | None = None) -> str:
    value = DEFAULTS[name] if default is None else default
    return f"(default: {value}; --smoke: {SMOKE[name]})"


def parse_args(argv=None) -> argparse.Namespace:
    parser = harness.parser(
        __file__, __doc__,
        smoke="seconds-long check: " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                for k, v in SMOKE.items())
        + " (flags you give win)")
    parser.add_argument("--task", default="adding",
                        help=f"comma-separated tasks among {', '.join(TASKS)}")
    parser.add_argument("--variants", default=None,
                        help="'all' or comma-separated names among: " + ", ".join(variants.names())
                        + "; or 'module:attr' naming your own cell class or factory "
                        "(importable from PYTHONPATH), e.g. mypkg.cells:MyCell "
                        + _default_help("variants"))
    parser.add_argument("--seeds", type=harness.positive_int, default=None,
                        help="seeds per variant: --seed, --seed + 1, ... "
                        + _default_help("seeds"))
    parser.add_argument("--steps", type=harness.positive_int, default=None,
                        help="training steps " + _default_help("steps", "the task's budget"))
    parser.add_argument("--batch-size", type=harness.positive_int, default=None,
                        help="batch size " + _default_help("batch_size", "the task's"))
    parser.add_argument("--hidden", type=harness.positive_int, default=None,
                        help="hidden size " + _default_help("hidden", "the task's"))
    parser.add_argument("--lr", type=harness.positive_float, default=None,
                        help="Adam learning rate (default: the task's); cosine-decayed to "
                        "lr/10, gradients clipped to global norm 1")
    parser.add_argument("--eval-every", type=harness.positive_int, default=None,
                        help="steps between evaluations / progress lines "
                        + _default_help("eval_every"))
    parser.add_argument("--equal-params", action="store_true",
                        help="choose each variant's hidden size to match the vanilla LSTM's "
                        "parameter count at --hidden")
    parser.add_argument("--search", type=harness.positive_int, default=1, metavar="N",
                        help="random search over N learning rates per variant (1: none)")
    parser.add_argument("--lr-range", type=harness.positive_float, nargs=2, default=(1e-3, 3e-2),
                        metavar=("LOW", "HIGH"), help="log-uniform search range of the lr")
    parser.add_argument("--sequential", action="store_true",
                        help="run minGRU/minLSTM/LRU/RG-LRU step by step (jaxrnn.scan) instead "
                        "of in parallel over time (jaxrnn.associative_scan); same function")
    parser.add_argument("--seq-len", type=harness.positive_int, default=None,
                        help="adding: sequence length " + _default_help("seq_len"))
    parser.add_argument("--copy-delay", type=harness.positive_int, default=20,
                        help="copy: blanks to bridge")
    parser.add_argument("--bptt", type=harness.positive_int, default=50,
                        help="charlm: window length")
    parser.add_argument("--lm-corpus", choices=("synthetic", "ptb"), default="synthetic",
                        help="charlm corpus (ptb reads ptb.*.txt from --data-dir, no download)")
    parser.add_argument("--data-dir", help="directory with the PTB files for --lm-corpus ptb")
    harness.add_device_flags(parser)
    args = harness.parse(parser, argv)
    harness.fill_presets(args, SMOKE if args.smoke else DEFAULTS, DEFAULTS)

    args.tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    bad = [t for t in args.tasks if t not in TASKS]
    if bad or not args.tasks:
        parser.error(f"--task: unknown task {bad}; valid tasks: {', '.join(TASKS)}")
    names = variants.names() if args.variants == "all" else tuple(
        v.strip() for v in args.variants.split(",") if v.strip())
    if not names:
        parser.error(f"--variants {args.variants!r}: no variant named; valid variants: "
                     f"{', '.join(variants.names())}")
    harness.check_cells(parser, names)
    args.variant_names = ("vanilla",) * ("vanilla" in names) + tuple(
        v for v in names if v != "vanilla")
    if args.lr_range[0] > args.lr_range[1]:
        parser.error(f"--lr-range {args.lr_range[0]} {args.lr_range[1]}: LOW must not exceed "
                     "HIGH")
    return args


def _to_record(result: RunResult) -> dict[str, Any]:
    """A RunResult as JSON data that :func:`_from_record` turns back, bitwise."""
    record: dict[str, Any] = {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, np.ndarray):
            value = {"dtype": value.dtype.str, "array": value.tolist()}
        elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            value = {"dtype": value[0].dtype.str, "arrays": [a.tolist() for a in value]}
        record[field.name] = value
    return record


def _from_record(record: dict[str, Any]) -> RunResult:
    values = {}
    for name, value in record.items():
        if isinstance(value, dict) and "array" in value:
            value = np.asarray(value["array"], dtype=value["dtype"])
        elif isinstance(value, dict) and "arrays" in value:
            value = [np.asarray(a, dtype=value["dtype"]) for a in value["arrays"]]
        values[name] = value
    return RunResult(**values)


def task_results(task: Task, finals: dict[str, np.ndarray],
                 results: dict[str, RunResult]) -> dict[str, Any]:
    """results.json's entry of one task: per variant the test metric over seeds, the chosen
    lr, and the comparison with vanilla (the numbers of results.md)."""
    ref = finals.get("vanilla")
    rows = {}
    for name, values in finals.items():
        r = results[name]
        row = {"mean": float(np.mean(values)), "std": _std(values),
               "values": [float(v) for v in values], "seeds": [int(s) for s in
                                                               r.seeds[select_trial(
                                                                   r, task.higher_is_better)]],
               "hidden_size": r.hidden, "num_params": r.num_params,
               "lr": float(np.unique(r.lrs[select_trial(r, task.higher_is_better)])[0]),
               "steps": r.steps, "wall_s": r.wall_s,
               "solved": None if task.solved is None else int(
                   sum(task.solved(float(v)) for v in values))}
        if ref is not None and name != "vanilla":
            row["vs_vanilla"] = float(np.mean(values) - np.mean(ref))
            row["p_welch"] = welch(values, ref)
        rows[name] = row
    return {"metric": f"test_{task.metric}", "higher_is_better": task.higher_is_better,
            "reference": task.reference, "variants": rows}


def main(argv=None) -> dict[str, dict[str, np.ndarray]]:
    args = parse_args(argv)
    mesh = harness.device_mesh(args)  # every visible device unless --devices N
    with harness.start(args, not_compared=NOT_COMPARED) as run:
        run.write_config({"variant_names": list(args.variant_names)})
        return ablate(args, run, mesh)


def ablate(args, run, mesh) -> dict[str, dict[str, np.ndarray]]:
    out = run.out

    def log(message: str) -> None:
        print(message, flush=True)

    progress = (lambda message: None) if args.no_progress else log
    all_finals, result_rows, curve_rows, tables, summary = {}, [], [], [], {}
    for task_name in args.tasks:
        task = TASKS[task_name](args)
        run_args = argparse.Namespace(**vars(args))
        run_args.steps = args.steps or task.steps
        run_args.batch_size = args.batch_size or task.batch_size
        harness.check_batch_size(mesh, run_args.batch_size)
        if mesh.size > 1:  # data parallel: each training batch split over the devices
            sample = task.sample
            task = dataclasses.replace(task, sample=lambda key, n, sample=sample: (
                jax.lax.with_sharding_constraint(sample(key, n), distributed.batch_sharding(mesh))
            ))
        hidden = args.hidden or task.hidden
        lr = args.lr or task.lr
        if args.search > 1:
            rng = np.random.default_rng(12345)
            low, high = np.log(args.lr_range[0]), np.log(args.lr_range[1])
            lrs = np.exp(rng.uniform(low, high, args.search))
        else:
            lrs = np.array([lr])
        target = None
        if args.equal_params:
            ref = variants.make("vanilla", hidden)
            target = (variants.parameter_count(ref, task.input_size)
                      + task.output_size * (jaxrnn.cells.output_size(ref, task.input_size) + 1))
        log(f"[{task.name}] {len(args.variant_names)} variants x {args.seeds} seeds x "
            f"{len(lrs)} lr; {run_args.steps} steps, batch {run_args.batch_size}, "
            f"hidden {hidden}{' (equal parameters)' if target else ''}")
        results, finals = {}, {}
        for name in args.variant_names:
            h = matched_hidden(name, task, target) if target else hidden
            unit = f"{task.name}.{name}".replace(":", "_")
            saved = run.completed(unit)
            if saved is not None:
                r = _from_record(saved)
                log(f"[{task.name}] {name}: done in the run being continued")
            else:
                r = run_variant(name, h, task, run_args, lrs, progress)
                run.save_completed(unit, _to_record(r))
            results[name] = r
            mask = select_trial(r, task.higher_is_better)
            finals[name] = r.test[mask]
            log(f"[{task.name}] {name}: test {task.metric} {np.mean(finals[name]):.4f} +- "
                f"{_std(finals[name]):.4f}  hidden {h}, {r.num_params} params, "
                f"{r.wall_s:.1f}s")
            for i in np.flatnonzero(mask):
                result_rows.append([task.name, name, int(r.seeds[i]), f"test_{task.metric}",
                                    f"{r.test[i]:.6g}", r.steps, f"{r.wall_s:.2f}", h,
                                    r.num_params, f"{r.lrs[i]:.4g}"])
            for k, step in enumerate(r.curve_steps):
                for i in range(len(r.seeds)):
                    curve_rows.append([task.name, name, int(r.seeds[i]), int(r.trials[i]),
                                       f"{r.lrs[i]:.4g}", step, f"{r.curve_loss[k][i]:.6g}",
                                       f"{r.curve_test[k][i]:.6g}"])
        tables.append(table(task, finals, results))
        summary[task.name] = task_results(task, finals, results)
        plots(out, task, results, finals)
        all_finals[task.name] = finals
        if "vanilla" in finals:
            v = finals["vanilla"]
            solved = "" if task.solved is None else (
                f"; solved by {sum(task.solved(float(x)) for x in v)}/{len(v)} seeds")
            log(f"[{task.name}] vanilla LSTM: test {task.metric} {np.mean(v):.4f}; "
                f"expected: {task.reference}{solved}")

    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "variant", "seed", "metric", "value", "steps", "wall_s",
                         "hidden_size", "num_params", "lr"])
        writer.writerows(result_rows)
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "variant", "seed", "trial", "lr", "step", "train_loss",
                         "test_metric"])
        writer.writerows(curve_rows)
    markdown = "\n".join(tables)
    (out / "results.md").write_text(markdown)
    run.write_results(summary)
    log("\n" + markdown)
    log("Greff et al. (2017): removing the forget gate (NFG) or the output activation (NOAF) "
        "hurts most; CIFG and NP do not hurt significantly. Compare with the marks above.")
    log(f"wrote {out}/results.csv, curves.csv, results.md, results.json and the PNGs")
    return all_finals


if __name__ == "__main__":
    harness.main(main)
