"""Reusable training pieces: batching, schedules, jitted steps, checkpoints, logs, the loop.

Generic over a user loss and any params pytree: nothing here knows a model (the language
model's stream evaluation and run folders are in :mod:`jaxrnn.nn`). The pieces,
in the order data flows through them:

Batching (:mod:`jaxrnn.train.batching`)
    ``batchify(ids, batch_size) -> [batch_size, batch_len]`` cuts a token stream into
    contiguous rows (tail dropped), as Zaremba et al. (2014)'s reader.
    ``num_windows(stream, bptt) = (batch_len - 1) // bptt``.
    ``get_window(stream, index, bptt) -> (inputs, targets)``, each ``[B, bptt]``, targets
    shifted by one; random access, so a resumed run can start mid-epoch.
    ``minibatches(num_examples, batch_size, *, seed, epoch, drop_last=True)`` ->
    ``[num_batches, batch_size]`` shuffled indices, deterministic in ``(seed, epoch)``.

Schedules and optimizers (:mod:`jaxrnn.train.schedules`)
    ``epoch_decay(base_lr, decay, decay_after, steps_per_epoch)``: ``step -> float32 lr``
    with ``lr = base_lr * decay ** max(epoch + 1 - decay_after, 0)``, ``epoch = step //
    steps_per_epoch`` (0-based). Small preset ``(1.0, 0.5, 4, n)``: epochs 1-4 at 1.0,
    epoch 5 at 0.5, epoch 6 at 0.25, ...
    ``make_optimizer(name, learning_rate, *, clip_norm, weight_decay=0.0, momentum=None)``
    -> ``chain(clip_by_global_norm(clip_norm), <name>)``; names in ``OPTIMIZERS``.
    ``lr_metric(schedule)`` -> ``extra_metrics`` for the loop: the rate of the last update.

State and steps (:mod:`jaxrnn.train.state`, :mod:`jaxrnn.train.step`)
    ``TrainState(step, params, opt_state, key, carry)``, a NamedTuple pytree;
    ``TrainState.create(params, optimizer, seed=0, carry=initial_carry)``. ``key`` is a
    raw ``uint32[2]`` ``jax.random.PRNGKey``; ``carry`` is what flows between batches
    (the LSTM state across TBPTT windows), or ``None``.
    ``make_train_step(loss_fn, optimizer, *, jit=True, donate=True)`` with
    ``loss_fn(params, carry, batch, key) -> (loss, (new_carry, metrics))`` returns
    ``train_step(state, batch) -> (new_state, metrics)``; step ``s`` uses key
    ``fold_in(state.key, s)``; ``metrics`` gains ``"objective"`` (the differentiated
    loss), ``"grad_norm"`` (before clipping) and ``"loss"`` (the objective, unless
    ``loss_fn`` reports its own ``"loss"``, e.g. the per-token mean when the objective is
    summed over time; the loop logs ``loss`` and ``ppl = exp(loss)``). With
    ``donate=True`` the input state is consumed (``run_training`` copies what it is given,
    so the caller's arrays stay valid).
    ``make_eval_step(eval_fn)`` with ``eval_fn(params, carry, batch) -> (new_carry,
    metrics)`` (summable metrics, e.g. ``{"loss_sum", "count"}``), and
    ``evaluate(eval_step, params, carry, batches) -> {name: sum}`` summing on the device
    and transferring once.

Checkpoints (:mod:`jaxrnn.train.checkpoint`)
    ``Checkpointer(directory, *, max_to_keep=3)``: ``save(step, state, metadata)`` is
    synchronous and atomic (orbax temporary folder + rename; a killed save is never
    listed); ``latest_step()``; ``restore(step=None, *, like) -> (state, metadata)``,
    bitwise, into ``like``'s structure/shapes/dtypes; ``close()``; a context manager. Each
    checkpoint carries the sha256 of its arrays and metadata (``tree_digest``); a damaged one
    raises ``CorruptCheckpointError`` on restore, and ``restore_intact(like=...)`` (what a
    resumed run uses) falls back to the newest intact one. A failed write raises
    ``CheckpointSaveError`` (path and errno), the earlier checkpoints intact.

Logs (:mod:`jaxrnn.train.metrics`)
    ``MetricsLog(path, *, resume_lines=None)``: JSON lines, fsynced per line; on resume it
    keeps exactly the first ``resume_lines`` lines. ``read_metrics(path)``,
    ``TensorBoardLog(logdir)``, ``plot_curves(metrics_path, png_path, *, key="ppl",
    x="epoch", splits=("train", "valid"))``, ``ProgressBar``.

The loop (:mod:`jaxrnn.train.loop`)
    ``run_training(*, state, train_step, get_batch, steps_per_epoch, num_epochs, out_dir,
    checkpointer=None, ckpt_every=None, resume=False, on_epoch_start=None,
    evaluate_fn=None, log_every=100, max_steps=None, tokens_per_step=None,
    extra_metrics=None, progress=True, verbose=True, tensorboard=False) -> (state,
    summary)``. Killed at any moment (even ``kill -9``) and rerun with ``resume=True``, it
    ends with bitwise the same params, optimizer state and ``metrics.jsonl`` (up to
    ``TIMING_KEYS``) as an uninterrupted run, provided ``get_batch``,
    ``on_epoch_start`` and ``evaluate_fn`` are deterministic and the device computation is
    (on GPU set ``XLA_FLAGS=--xla_gpu_deterministic_ops=true``: scatter-add gradients of
    embeddings are otherwise nondeterministic). A NaN/inf or overflowing loss, gradient
    norm or evaluation perplexity raises ``NonFiniteLossError`` and no checkpoint of the bad
    state is written.

Host allocator (:mod:`jaxrnn.train.host`)
    ``reexec_with_allocator_settings()``: a CPU training script's first call under
    ``__main__``; on Linux/glibc it re-executes the program once with glibc's
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` raised and ``MALLOC_ARENA_MAX=1``,
    so that XLA:CPU's per-step buffers are reused instead of zero-filled fresh pages every step
    (PTB small step about 20% faster; an LSTM layer at (256, 100, 512) 13%). Variables the user
    set keep their values. ``allocator_settings()`` reports them; ``JAXRNN_SYSTEM_MALLOC=1``
    opts out.

A truncated-BPTT language model (Zaremba et al., 2014) wires them up like this::

    stream = batchify(train_ids, batch_size)
    steps = num_windows(stream, bptt)
    schedule = epoch_decay(1.0, 0.5, 4, steps)
    optimizer = make_optimizer("sgd", schedule, clip_norm=5.0)

    def loss_fn(params, carry, batch, key):      # mean token cross-entropy
        inputs, targets = batch
        logits, carry = model_apply(params, carry, inputs, key)   # your model
        loss = cross_entropy(logits, targets).mean()
        return loss, (carry, {})

    state = TrainState.create(params, optimizer, seed=0, carry=zeros_carry)
    state, summary = run_training(
        state=state,
        train_step=make_train_step(loss_fn, optimizer),
        get_batch=lambda epoch, index: get_window(stream, index, bptt),
        steps_per_epoch=steps, num_epochs=13, out_dir=out_dir, ckpt_every=200,
        resume=args.resume,
        on_epoch_start=lambda s, epoch: s._replace(carry=zeros_carry),
        evaluate_fn=lambda s, epoch: valid_metrics(s.params),   # {"loss": ..., "ppl": ...}
        tokens_per_step=batch_size * bptt,
        extra_metrics=lambda s: {"lr": float(schedule(s.step - 1))},
    )
"""

from jaxrnn.train.batching import (
    StreamTooShortError,
    batchify,
    get_window,
    minibatches,
    num_windows,
)
from jaxrnn.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    CheckpointSaveError,
    CorruptCheckpointError,
    NonFiniteStateError,
    tree_digest,
)
from jaxrnn.train.host import (
    allocator_settings,
    reexec_with_allocator_settings,
    runs_on_cpu,
    use_deterministic_ops,
)
from jaxrnn.train.loop import TIMING_KEYS, NonFiniteLossError, run_training
from jaxrnn.train.metrics import (
    MetricsLog,
    ProgressBar,
    TensorBoardLog,
    perplexity,
    plot_curves,
    read_metrics,
)
from jaxrnn.train.schedules import OPTIMIZERS, epoch_decay, lr_metric, make_optimizer
from jaxrnn.train.state import TrainState
from jaxrnn.train.step import evaluate, make_eval_step, make_train_step

__all__ = [
    "OPTIMIZERS",
    "TIMING_KEYS",
    "CheckpointError",
    "CheckpointSaveError",
    "Checkpointer",
    "CorruptCheckpointError",
    "MetricsLog",
    "NonFiniteLossError",
    "NonFiniteStateError",
    "ProgressBar",
    "StreamTooShortError",
    "TensorBoardLog",
    "TrainState",
    "allocator_settings",
    "batchify",
    "epoch_decay",
    "evaluate",
    "get_window",
    "lr_metric",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "minibatches",
    "num_windows",
    "perplexity",
    "plot_curves",
    "read_metrics",
    "reexec_with_allocator_settings",
    "runs_on_cpu",
    "use_deterministic_ops",
    "run_training",
    "tree_digest",
]
