"""Token tasks, the model and the vmapped-seed trainer shared by ``state_tracking.py`` and
``recall.py``.

A task is a jittable sampler of ``(tokens [B, T] int32, targets [B, T] int32, weights [B, T]
float32)``: the loss and the accuracy count the positions whose weight is 1. The model is one
recurrent layer between an embedding and a two-layer head, per step::

    e_t = E[token_t]                  (embedding, width --embed-size)
    x_t = e_t, or [e_t, e_{t-1}]      (token_shift: the token before, e_0 = 0)
    y_t = cell(x_1 .. x_t)            (the cell under test, one layer)
    logits_t = W_2 gelu(W_1 y_t + b_1) + b_2

The token shift is the smallest form of the short causal convolution that Mamba, DeltaNet and
the Zoology models put before the recurrence. Associative recall needs it in a one-layer model:
without it, the step that reads a value cannot see the key it belongs to.

Training: Adam, the learning rate cosine-decayed to a tenth of its value, gradients clipped to
global norm 1. The seeds of one cell train as one jitted, vmapped program (one compilation per
cell and size); seed s sees the same data stream for every cell (paired comparison).

Drivers: every cell runs through :func:`jaxrnn.scan` by default. With ``parallel=True`` a
linear-recurrence cell (:func:`jaxrnn.drivers.is_linear`) trains through
:func:`jaxrnn.associative_scan` and a cell with a chunkwise form (``chunk_step``) through
:func:`jaxrnn.chunkwise_scan` (chunks of 16); evaluation always runs :func:`jaxrnn.scan`
(memory linear in the state, not in the length times the state). On a 2-core CPU at these sizes
(T = 40, 3 seeds x 64 sequences, hidden 32-64) the parallel forms were the slower ones: Mamba
took about twice as long per step through the associative scan, and DeltaNet's chunkwise
training did not finish 5 steps in 400 s.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import harness
import jaxrnn

Sampler = Callable[[jax.Array, int], tuple[jax.Array, jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class TokenTask:
    """A sequence-to-sequence classification task on tokens.

    Attributes:
      name: the task's name.
      vocab_size: number of input tokens (ids ``0 .. vocab_size - 1``).
      num_classes: number of target classes.
      chance: accuracy of the best input-independent guess.
      sample: ``sample(key, batch_size) -> (tokens, targets, weights)``, jittable; the
        training distribution.
      description: one line for the reports.
    """

    name: str
    vocab_size: int
    num_classes: int
    chance: float
    sample: Sampler
    description: str


# ------------------------------------------------------------------------- group word problems


def permutation_group(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The symmetric group S_n: its elements and its composition table.

    Returns:
      ``(perms, table)``: ``perms [n!, n]``, element ``g`` maps ``i`` to ``perms[g, i]``
      (``perms[0]`` is the identity); ``table[a, b]`` is the element "``a``, then ``b``",
      the permutation ``i -> perms[b, perms[a, i]]``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"permutation_group: n={n!r}; expected a positive int")
    perms = np.array(list(itertools.permutations(range(n))), np.int32)
    index = {tuple(p): g for g, p in enumerate(perms)}
    table = np.array([[index[tuple(perms[b][perms[a]])] for b in range(len(perms))]
                      for a in range(len(perms))], np.int32)
    return perms, table


def cyclic_group(n: int) -> np.ndarray:
    """The composition table of the cyclic group Z_n: ``table[a, b] = (a + b) mod n``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"cyclic_group: n={n!r}; expected a positive int")
    return (np.arange(n)[:, None] + np.arange(n)[None, :]).astype(np.int32) % n


def prefix_products(table: jax.Array, tokens: jax.Array) -> jax.Array:
    """``out[:, t] = tokens[:, 0] * tokens[:, 1] * ... * tokens[:, t]`` in the group of
    ``table`` (``table[a, b]``: ``a`` then ``b``; element 0 the identity). ``tokens [B, T]``."""
    table = jnp.asarray(table)

    def body(state, x):
        state = table[state, x]
        return state, state

    _, out = jax.lax.scan(body, jnp.zeros(tokens.shape[:1], jnp.int32),
                          jnp.swapaxes(tokens, 0, 1))
    return jnp.swapaxes(out, 0, 1)


def word_problem(name: str, table: np.ndarray, length: int, min_length: int,
                 description: str) -> TokenTask:
    """The word problem of a finite group: read group elements, output the running product.

    Training sequences have ``length`` tokens, uniform over the group; the target at step t is
    the product of the first t tokens, and the loss counts the steps t >= ``min_length``. A
    causal model's output at step t sees the first t tokens only, so this trains on every
    length ``min_length .. length`` at once (each prefix is a word of its own length).
    """
    size = int(table.shape[0])
    table = jnp.asarray(table)

    def sample(key, batch_size):
        tokens = jax.random.randint(key, (batch_size, length), 0, size, jnp.int32)
        targets = prefix_products(table, tokens)
        weights = (jnp.arange(1, length + 1) >= min_length).astype(jnp.float32)
        return tokens, targets, jnp.broadcast_to(weights, (batch_size, length))

    return TokenTask(name, size, size, 1.0 / size, sample, description)


def word_problem_test_set(task: TokenTask, key: jax.Array, batch_size: int, length: int
               ) -> tuple[jax.Array, jax.Array]:
    """``(tokens, targets)`` of ``batch_size`` test words of ``length`` tokens: the target at
    step t (1-based) is the answer for the word of length t."""
    table = _TABLES[task.name]
    tokens = jax.random.randint(key, (batch_size, length), 0, task.vocab_size, jnp.int32)
    return tokens, prefix_products(jnp.asarray(table), tokens)


_TABLES: dict[str, np.ndarray] = {
    "parity": cyclic_group(2),
    "modular_arithmetic": cyclic_group(5),
    "s3": permutation_group(3)[1],
}

STATE_TRACKING = {
    "parity": "parity of the number of ones in a bit string (the group Z_2)",
    "modular_arithmetic": "sum of digits 0-4 modulo 5, no brackets (the group Z_5)",
    "s3": "word problem of S_3: composition of permutations of 3 elements (non-abelian)",
}


def state_tracking_task(name: str, length: int = 40, min_length: int = 3) -> TokenTask:
    """``parity``, ``modular_arithmetic`` or ``s3`` (see ``STATE_TRACKING``)."""
    if name not in _TABLES:
        raise ValueError(f"state_tracking_task: name={name!r}; expected one of "
                         f"{', '.join(_TABLES)}")
    return word_problem(name, _TABLES[name], length, min_length, STATE_TRACKING[name])


# -------------------------------------------------------------------------------- recall tasks


def _random_distinct(key: jax.Array, batch_size: int, count: int, pool: int) -> jax.Array:
    """``count`` distinct values of ``0 .. pool - 1`` per row, in random order ``[B, count]``."""
    noise = jax.random.uniform(key, (batch_size, pool))
    return jnp.argsort(noise, axis=1)[:, :count].astype(jnp.int32)


def mqar_task(num_pairs: int = 16, num_keys: int = 32, num_values: int = 32) -> TokenTask:
    """Multi-query associative recall (Arora et al. 2023, "Zoology: Measuring and Improving
    Recall in Efficient Language Models").

    A sequence is ``num_pairs`` key-value pairs ``k_1 v_1 ... k_P v_P`` (distinct keys, ids
    ``0 .. num_keys - 1``; values ``num_keys .. num_keys + num_values - 1``, drawn with
    replacement), then every key once more in a new random order. At each such query the
    target is the value that followed that key (class ``v - num_keys``); only the queries
    count. Chance: ``1 / num_values``. Sequence length ``3 num_pairs``.
    """
    for field, value in (("num_pairs", num_pairs), ("num_keys", num_keys),
                         ("num_values", num_values)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"mqar_task: {field}={value!r}; expected a positive int")
    if num_pairs > num_keys:
        raise ValueError(f"mqar_task: num_pairs={num_pairs} > num_keys={num_keys}; the keys of "
                         "one sequence are distinct")
    length = 3 * num_pairs

    def sample(key, batch_size):
        k_keys, k_values, k_order = jax.random.split(key, 3)
        keys = _random_distinct(k_keys, batch_size, num_pairs, num_keys)
        values = jax.random.randint(k_values, (batch_size, num_pairs), 0, num_values, jnp.int32)
        order = _random_distinct(k_order, batch_size, num_pairs, num_pairs)
        queries = jnp.take_along_axis(keys, order, axis=1)
        answers = jnp.take_along_axis(values, order, axis=1)
        pairs = jnp.stack([keys, values + num_keys], axis=2).reshape(batch_size, 2 * num_pairs)
        tokens = jnp.concatenate([pairs, queries], axis=1)
        targets = jnp.concatenate([jnp.zeros((batch_size, 2 * num_pairs), jnp.int32), answers],
                                  axis=1)
        weights = (jnp.arange(length) >= 2 * num_pairs).astype(jnp.float32)
        return tokens, targets, jnp.broadcast_to(weights, (batch_size, length))

    return TokenTask("mqar", num_keys + num_values, num_values, 1.0 / num_values, sample,
                     f"MQAR: {num_pairs} key-value pairs ({num_keys} keys, {num_values} "
                     f"values), then the {num_pairs} keys as queries")


def selective_copying_task(body_length: int = 48, num_tokens: int = 8,
                           num_colours: int = 8) -> TokenTask:
    """Selective copying (Gu & Dao 2023, "Mamba"; Feng et al. 2024, "Were RNNs All We
    Needed?").

    ``num_tokens`` data tokens (ids ``1 .. num_colours``) sit at random positions of a body of
    ``body_length`` noise tokens (id 0); ``num_tokens`` recall markers (id ``num_colours + 1``)
    follow, and at the i-th marker the target is the i-th data token (class ``id - 1``).
    Only the markers count. Chance: ``1 / num_colours``. Sequence length
    ``body_length + num_tokens``.
    """
    for field, value in (("body_length", body_length), ("num_tokens", num_tokens),
                         ("num_colours", num_colours)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"selective_copying_task: {field}={value!r}; expected a positive "
                             "int")
    if num_tokens > body_length:
        raise ValueError(f"selective_copying_task: num_tokens={num_tokens} > "
                         f"body_length={body_length}")
    length = body_length + num_tokens
    marker = num_colours + 1

    def sample(key, batch_size):
        k_where, k_colour = jax.random.split(key)
        where = jnp.sort(_random_distinct(k_where, batch_size, num_tokens, body_length), axis=1)
        colours = jax.random.randint(k_colour, (batch_size, num_tokens), 0, num_colours,
                                     jnp.int32)
        rows = jnp.arange(batch_size)[:, None]
        body = jnp.zeros((batch_size, body_length), jnp.int32).at[rows, where].set(colours + 1)
        tokens = jnp.concatenate([body, jnp.full((batch_size, num_tokens), marker, jnp.int32)],
                                 axis=1)
        targets = jnp.concatenate([jnp.zeros((batch_size, body_length), jnp.int32), colours],
                                  axis=1)
        weights = (jnp.arange(length) >= body_length).astype(jnp.float32)
        return tokens, targets, jnp.broadcast_to(weights, (batch_size, length))

    return TokenTask("selective_copying", num_colours + 2, num_colours, 1.0 / num_colours,
                     sample, f"selective copying: {num_tokens} of {num_colours} colours among "
                     f"{body_length} noise tokens, then recall them in order")


# -------------------------------------------------------------------------------------- model


def init_model(cell: Any, key: jax.Array, vocab_size: int, embed_size: int,
               num_classes: int, token_shift: bool = False) -> dict[str, Any]:
    """Parameters of embedding (-> token shift) -> cell -> two-layer head (module
    docstring)."""
    import harness

    k_embed, k_cell, k_1, k_2 = jax.random.split(key, 4)
    width = jaxrnn.cells.output_size(cell, embed_size)
    return {"embed": jax.random.normal(k_embed, (vocab_size, embed_size), jnp.float32),
            "cell": cell.init(k_cell, embed_size * (2 if token_shift else 1)),
            "head1": harness.dense_init(k_1, width, width),
            "head2": harness.dense_init(k_2, width, num_classes)}


def driver(cell: Any, parallel: bool) -> Callable[..., Any]:
    """The driver a cell runs with: :func:`jaxrnn.scan`, or with ``parallel`` its parallel
    form where it has one (module docstring)."""
    if parallel and jaxrnn.drivers.is_linear(cell):
        return jaxrnn.associative_scan
    if parallel and hasattr(cell, "chunk_step"):
        return lambda c, p, xs: jaxrnn.chunkwise_scan(c, p, xs, chunk_size=16)
    return jaxrnn.scan


def logits(cell: Any, params: Mapping[str, Any], tokens: jax.Array, parallel: bool = False,
           token_shift: bool = False) -> jax.Array:
    """``[B, T, num_classes]`` logits of the model for ``tokens [B, T]``."""
    import harness

    xs = params["embed"][tokens]
    if token_shift:
        before = jnp.pad(xs[:, :-1], ((0, 0), (1, 0), (0, 0)))
        xs = jnp.concatenate([xs, before], axis=-1)
    ys, _ = driver(cell, parallel)(cell, params["cell"], xs)
    return harness.dense(params["head2"], jax.nn.gelu(harness.dense(params["head1"], ys)))


def loss_fn(cell, params, tokens, targets, weights, parallel=False, token_shift=False):
    out = logits(cell, params, tokens, parallel, token_shift)
    nll = optax.softmax_cross_entropy_with_integer_labels(out, targets)
    return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def carry_floats(cell: Any, input_size: int) -> int:
    """Floats in the cell's recurrent carry for one example (every leaf of
    ``initial_carry``; a complex entry counts two)."""
    params = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.PRNGKey(0))
    carry = jax.eval_shape(cell.initial_carry, params)
    return int(sum(math.prod(leaf.shape) * (2 if jnp.issubdtype(leaf.dtype, jnp.complexfloating)
                                            else 1) for leaf in jax.tree.leaves(carry)))


@dataclasses.dataclass
class Trained:
    """The result of :func:`train`: per-seed parameters (leading axis: the seeds)."""

    params: Any
    final_loss: np.ndarray  # [seeds]
    wall_s: float


def train(cell: Any, task: TokenTask, *, seeds: Sequence[int], steps: int, batch_size: int,
          lr: float, embed_size: int, parallel: bool = False, token_shift: bool = False,
          log: Callable[[str], None] = print, log_every: int = 0, label: str = "") -> Trained:
    """Trains one model per seed, vmapped in one jitted program.

    Args:
      cell: the cell under test.
      task: the task (its ``sample`` gives the training batches).
      seeds: the seeds; seed s initialises with ``fold_in(PRNGKey(s), 1)`` and samples data
        with ``fold_in(PRNGKey(s), 2)``, the same stream for every cell.
      steps: optimiser steps.
      batch_size: sequences per step (per seed).
      lr: peak learning rate (cosine decay to ``lr / 10``).
      embed_size: the embedding width (the cell's input size).
      parallel: train through the cell's parallel form where it has one (module docstring).
      token_shift: feed the cell ``[e_t, e_{t-1}]`` (module docstring).
      log: where progress lines go.
      log_every: at most this many steps between progress lines (0: a single line at the
        end); the steps are split into equal chunks, one compilation.
      label: prefix of the progress lines.
    """
    schedule = optax.cosine_decay_schedule(lr, steps, alpha=0.1)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    base = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(base)
    data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(base)

    @jax.jit
    def init(keys):
        params = jax.vmap(lambda k: init_model(cell, k, task.vocab_size, embed_size,
                                               task.num_classes, token_shift))(keys)
        return params, jax.vmap(optimizer.init)(params)

    def one_step(params, opt_state, key, step):
        batch = task.sample(jax.random.fold_in(key, step), batch_size)
        loss, grads = jax.value_and_grad(
            lambda p: loss_fn(cell, p, *batch, parallel, token_shift))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    # chunks of equal length (one compilation): the fewest that are at most log_every long
    pieces = -(-steps // max(1, min(log_every or steps, steps)))
    while steps % pieces:
        pieces += 1
    chunk = steps // pieces

    @functools.partial(jax.jit, static_argnums=2)
    def run(params, opt_state, count, start):  # count: static, one compilation
        def body(carry, step):
            p, o, loss = jax.vmap(one_step, in_axes=(0, 0, 0, None))(*carry, data_keys, step)
            return (p, o), loss

        (params, opt_state), losses = jax.lax.scan(
            body, (params, opt_state), start + jnp.arange(count, dtype=jnp.int32))
        return params, opt_state, losses

    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        start = time.perf_counter()
        params, opt_state = init(init_keys)
        done, losses = 0, np.zeros(len(seeds))
        while done < steps:
            params, opt_state, chunk_losses = run(params, opt_state, chunk, done)
            done += chunk
            losses = np.asarray(jnp.mean(chunk_losses[-max(1, chunk // 10):], axis=0))
            if log_every:
                log(f"  {label} step {done}/{steps}  loss {np.mean(losses):.4f}  "
                    f"{time.perf_counter() - start:.1f}s")
        jax.block_until_ready(params)
    return Trained(params, losses, time.perf_counter() - start)


def accuracy_per_step(cell: Any, params: Any, tokens: jax.Array, targets: jax.Array,
                      batch_chunk: int = 256, token_shift: bool = False) -> np.ndarray:
    """``[seeds, T]`` accuracy at each step over the examples (``params`` per seed)."""
    @jax.jit
    def correct(params, tokens, targets):
        out = jax.vmap(lambda p: logits(cell, p, tokens, token_shift=token_shift))(params)
        return jnp.sum(jnp.argmax(out, axis=-1) == targets[None], axis=1)

    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        total = 0
        for i in range(0, tokens.shape[0], batch_chunk):
            total = total + np.asarray(correct(params, tokens[i:i + batch_chunk],
                                               targets[i:i + batch_chunk]))
    return total / tokens.shape[0]


# ------------------------------------------------------------------------------------ reports


def tasks_and_cells(p: Any, args: Any, valid_tasks: Sequence[str], default_variants: str,
                    smoke_variants: str) -> tuple[list[str], list[str]]:
    """``--task`` and ``--variants`` of a script, checked (``p.error`` names the flag); the
    variants default to ``default_variants`` (``smoke_variants`` with ``--smoke``)."""
    tasks = [t.strip() for t in args.task.split(",") if t.strip()]
    bad = [t for t in tasks if t not in valid_tasks]
    if bad or not tasks:
        p.error(f"--task: unknown task(s) {bad}; valid tasks: {', '.join(valid_tasks)}")
    if args.variants is None:
        args.variants = smoke_variants if args.smoke else default_variants
    names = harness.check_cells(p, [v.strip() for v in args.variants.split(",") if v.strip()])
    if not names:
        p.error("--variants: expected at least one variant")
    return tasks, list(names)


def mean_std(values: Sequence[float]) -> str:
    """``"mean +- std"`` (sample std over seeds; 0 for one seed)."""
    values = np.asarray(values, float)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} ± {std:.3f}"


def heatmap(path, rows: Sequence[str], columns: Sequence[str], values: np.ndarray,
            title: str, chance: Sequence[float] | None = None) -> None:
    """A rows x columns heatmap of accuracies, each cell annotated, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(columns), 1.0 + 0.45 * len(rows)))
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if v > 0.6 else "white")
    fig.colorbar(image, ax=ax, label="accuracy")
    ax.set_title(title if chance is None else
                 f"{title}\nchance: {', '.join(f'{c:.3f}' for c in chance)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
