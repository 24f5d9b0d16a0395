"""The resumable training loop: kill it at any moment, resume, get bitwise the same run.

Everything that decides what happens next is either in the checkpoint or a pure function
of the checkpointed step:

* the data position: ``epoch, index = divmod(state.step, steps_per_epoch)`` and the
  batch is ``get_batch(epoch, index)``;
* randomness: ``state.key`` folded with ``state.step`` (see :func:`make_train_step`);
* the recurrent carry across TBPTT windows: ``state.carry``;
* the running metric sums of the current log interval and epoch: float32 on the device,
  saved exactly in the checkpoint's metadata;
* the metrics file: the checkpoint stores how many lines it had, and a resumed run cuts
  the file back to that count before going on.

Checkpoints are written every ``ckpt_every`` steps and at each epoch's end, after that
epoch's evaluation and log lines, so a resumed run neither repeats nor skips a line.
Only timings (``tokens_per_sec``, ``wall_s``: :data:`TIMING_KEYS`) differ between an
interrupted-and-resumed run and an uninterrupted one.

Throughput. ``tokens_per_sec`` has one definition wherever it appears (a train line of
``metrics.jsonl``, the summary, a script's ``results.json``, the progress bar): tokens of
the *timed* updates divided by their wall time. Every update of a process is timed except
its first, which includes compiling the train step (a resumed run compiles again, so its
first update is not timed either). The time of timed updates runs from the end of one
update to the end of the next as seen by the host (each train line waits for its updates
to finish on the device), and never includes evaluation, logging or checkpoint saving. A train
line's figure covers the timed updates since the previous train line; the summary's, every
timed update of this process, so it is the pooled rate of the train lines:
``sum(tokens) / sum(tokens / tokens_per_sec)``. ``wall_s`` is the time since this
process called :func:`run_training`, compilation, evaluation and saving included.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.train.checkpoint import Checkpointer, NonFiniteStateError
from jaxrnn.train.metrics import (
    MetricsLog,
    ProgressBar,
    TensorBoardLog,
    perplexity,
    read_metrics,
)
from jaxrnn.train.state import TrainState

__all__ = ["TIMING_KEYS", "NonFiniteLossError", "run_training"]

TIMING_KEYS = ("tokens_per_sec", "wall_s")
"""Metrics-line keys that may differ between a resumed run and an uninterrupted one (their
definitions: the module docstring's "Throughput")."""

_FORMAT = "jaxrnn.train.loop/1"
Sums = dict[str, Any]


class NonFiniteLossError(FloatingPointError):
    """The run diverged: the loss or gradient norm became NaN or infinite (or their running
    sums overflowed), an evaluation gave a non-finite loss or perplexity, or the state to be
    checkpointed held NaN/inf. Nothing after the last good checkpoint was saved.

    Attributes:
        step: 0-based index of the first bad update (``state.step`` before it), or, for an
            evaluation or a state found bad at a save, the update count at that point.
        epoch: 0-based epoch of that update.
        index: batch index within the epoch.
        last_checkpoint: the latest good checkpoint's step, or ``None``.
        what: what was non-finite.
    """

    def __init__(self, step: int, steps_per_epoch: int, last_checkpoint: int | None,
                 what: str = "loss or gradient norm", *, evaluation: bool = False) -> None:
        self.step, self.what = step, what
        self.epoch, self.index = divmod(step, steps_per_epoch)
        self.last_checkpoint = last_checkpoint
        last = (f"the last good checkpoint is step {last_checkpoint} (resume from it with a "
                "lower learning rate or a smaller initialisation)"
                if last_checkpoint is not None else "there is no good checkpoint")
        where = (f"in the evaluation after epoch {self.epoch} (step {step})" if evaluation
                 else f"at step {step} (epoch {self.epoch}, batch {self.index})")
        super().__init__(
            f"non-finite {what} {where}; the run stopped without saving this state; {last}"
        )


@functools.partial(jax.jit, donate_argnums=0)
def _accumulate(sums: Sums, metrics: Mapping[str, jax.Array], step: jax.Array) -> Sums:
    values = {name: jnp.asarray(v).astype(jnp.float32) for name, v in metrics.items()}
    finite = jnp.isfinite(values["loss"])
    if "grad_norm" in values:
        finite = finite & jnp.isfinite(values["grad_norm"])
    first_bad = jnp.where((sums["first_bad"] < 0) & ~finite, step, sums["first_bad"])
    return {
        "interval": {n: sums["interval"][n] + values[n] for n in sums["interval"]},
        "epoch": {n: sums["epoch"][n] + values[n] for n in sums["epoch"]},
        "first_bad": first_bad,
    }


def _filled(metrics: Mapping[str, jax.Array], values: Mapping[str, float]) -> dict[str, jax.Array]:
    """float32 sums with the values saved in a checkpoint (0 where none), placed like the
    step's metrics, so that the accumulation compiles once."""
    return {name: jnp.full_like(jnp.asarray(m), np.float32(values.get(name, 0.0)),
                                dtype=jnp.float32) for name, m in metrics.items()}


def _means(sums: Mapping[str, Any], count: int) -> dict[str, float]:
    out = {name: float(value) / count for name, value in sums.items()}
    out["ppl"] = perplexity(out["loss"])
    return out


def _call_on_epoch_start(
    on_epoch_start: Callable[[TrainState, int], TrainState], state: TrainState, epoch: int
) -> TrainState:
    """Runs the hook and copies the arrays it brought in (e.g. a shared zero carry), since
    the next step donates them."""
    before = {id(leaf) for leaf in jax.tree.leaves(state)}
    state = on_epoch_start(state, epoch)
    return jax.tree.map(lambda x: x if id(x) in before else jnp.copy(x), state)


def _check_positive(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"run_training: {name} must be a positive int{' or None' if allow_none else ''}; "
            f"got {value!r}"
        )


def run_training(
    *,
    state: TrainState,
    train_step: Callable[[TrainState, Any], tuple[TrainState, Mapping[str, jax.Array]]],
    get_batch: Callable[[int, int], Any],
    steps_per_epoch: int,
    num_epochs: int,
    out_dir: str | os.PathLike,
    checkpointer: Checkpointer | None = None,
    ckpt_every: int | None = None,
    resume: bool = False,
    on_epoch_start: Callable[[TrainState, int], TrainState] | None = None,
    evaluate_fn: Callable[[TrainState, int], Mapping[str, Any]] | None = None,
    log_every: int = 100,
    max_steps: int | None = None,
    tokens_per_step: int | None = None,
    extra_metrics: Callable[[TrainState], Mapping[str, Any]] | None = None,
    progress: bool | None = True,
    verbose: bool = True,
    tensorboard: bool = False,
) -> tuple[TrainState, dict[str, Any]]:
    """Trains ``num_epochs * steps_per_epoch`` steps, checkpointing and logging, resumably.

    Per step ``s`` (``epoch, index = divmod(s, steps_per_epoch)``)::

        if index == 0 and on_epoch_start: state = on_epoch_start(state, epoch)
        state, metrics = train_step(state, get_batch(epoch, index))

    Metrics lines written to ``<out_dir>/metrics.jsonl`` (``step`` counts updates done,
    ``epoch`` is ``step / steps_per_epoch`` as a float, so 1.0 is the end of the first):

    * ``split="train"`` every ``log_every`` steps and at each epoch end: the means of the
      step metrics since the previous train line (``loss``, ``grad_norm``, user metrics),
      ``ppl = exp(loss)``, ``extra_metrics(state)``, ``tokens_per_sec`` (over the timed
      updates of the interval: every update but the first of this process, evaluation and
      saving excluded; absent when the interval has none), ``wall_s``;
    * ``split="train_epoch"`` at each epoch end: the same means over the whole epoch
      (Zaremba's per-epoch train perplexity);
    * at each epoch end, ``evaluate_fn(state, epoch)``'s results: a flat dict becomes a
      ``split="valid"`` line; a dict of dicts ``{"valid": {...}, "test": {...}}`` becomes
      one line per key. ``ppl = exp(loss)`` is added where ``loss`` is given without it.

    Args:
        state: the initial state (used when there is no checkpoint to resume, and as the
            structure to restore into). It is copied, so the caller's arrays stay valid
            even with a donating ``train_step``.
        train_step: from :func:`make_train_step`; its metrics must include ``"loss"``.
        get_batch: ``get_batch(epoch, index) -> batch``, deterministic, random access.
        steps_per_epoch: updates per epoch.
        num_epochs: epochs to train; the run ends at step ``num_epochs * steps_per_epoch``.
        out_dir: run folder for ``metrics.jsonl`` (and ``checkpoints/``, ``tensorboard/``).
        checkpointer: where checkpoints go; default ``Checkpointer(out_dir/"checkpoints")``
            (closed at the end). A given one is left open.
        ckpt_every: also checkpoint every this many steps (``None``: epoch ends only).
        resume: continue from the latest checkpoint if there is one (starting fresh if
            not). Without it, a folder that already holds checkpoints is an error.
        on_epoch_start: ``(state, epoch) -> state`` before each epoch's first step, e.g.
            ``lambda s, e: s._replace(carry=zeros)`` to reset the carried hidden state.
            Arrays it brings in are copied before the step donates them, so the same
            ``zeros`` can be reused every epoch.
        evaluate_fn: ``(state, epoch) -> results`` after each epoch's last step. Must not
            modify ``state``'s buffers (use a non-donating eval step).
        log_every: write a train line (and check for NaN) every this many steps.
        max_steps: stop, without saving, once ``state.step`` reaches this global step (a
            short run, or a simulated interruption). ``None``: run to the end.
        tokens_per_step: tokens per update (``batch_size * bptt``) for ``tokens_per_sec``.
        extra_metrics: ``state -> dict`` of extra numbers for every line, evaluated after
            the step: e.g. ``lambda s: {"lr": schedule(s.step - 1)}`` is the rate the last
            update used.
        progress: show a tqdm bar when stderr is a tty (``True`` or ``None``); ``False``
            never shows it.
        verbose: print one summary line per epoch.
        tensorboard: also write every line's numbers to ``<out_dir>/tensorboard``.

    Returns:
        ``(state, summary)``; ``summary`` has ``step``, ``epoch``, ``finished`` (reached the
        last step), ``resumed_from`` (checkpoint step or ``None``), ``train_ppl`` and
        ``valid_ppl`` (of the last ``"train_epoch"``/``"valid"`` line, or ``None``),
        ``history`` (every non-``"train"`` line of the whole run, oldest first, read back
        from the metrics file), ``last`` (``{split: last line}``), ``tokens_per_sec``
        (the same definition as the train lines', over every timed update of this process:
        their pooled rate; ``None`` without ``tokens_per_step`` or timed updates) and
        ``wall_s`` (since this call started). See the module docstring's "Throughput".

    Raises:
        NonFiniteLossError: the loss or gradient norm became NaN/inf or their running sums
            overflowed (found at the next log step or save), an evaluation gave a non-finite
            loss or perplexity, or the state held NaN/inf at a save; no checkpoint of the bad
            state is written.
        CorruptCheckpointError: ``resume=True`` and no checkpoint is intact (a corrupt newest
            one is reported and skipped, and the run continues from the newest intact one).
        CheckpointSaveError: the OS refused a checkpoint write (e.g. a full disk).
        FileExistsError: ``resume=False`` but ``out_dir`` already holds checkpoints.
        ValueError: bad arguments, or the checkpoint's ``steps_per_epoch`` differs.
    """
    for name, value in (("steps_per_epoch", steps_per_epoch), ("num_epochs", num_epochs),
                        ("log_every", log_every)):
        _check_positive(name, value)
    _check_positive("ckpt_every", ckpt_every, allow_none=True)
    _check_positive("max_steps", max_steps, allow_none=True)
    _check_positive("tokens_per_step", tokens_per_step, allow_none=True)
    wall_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own_checkpointer = checkpointer is None
    if checkpointer is None:
        checkpointer = Checkpointer(out_dir / "checkpoints")
    total_steps = num_epochs * steps_per_epoch
    stop_step = total_steps if max_steps is None else min(max_steps, total_steps)

    latest = checkpointer.latest_step()
    if latest is not None and not resume:
        raise FileExistsError(
            f"run_training: {checkpointer.directory} already holds checkpoints (latest step "
            f"{latest}); pass resume=True to continue that run, or use a fresh out_dir"
        )
    loop: dict[str, Any] = {"interval_sums": None, "interval_steps": 0,
                            "epoch_sums": None, "epoch_steps": 0, "metrics_lines": 0}
    resumed_from = None
    if resume and latest is not None:
        found = checkpointer.restore_intact(like=state, report=print)
        assert found is not None
        latest, state, meta = found
        if meta.get("format") != _FORMAT or meta.get("steps_per_epoch") != steps_per_epoch:
            raise ValueError(
                f"run_training: checkpoint {latest} in {checkpointer.directory} was written "
                f"with steps_per_epoch={meta.get('steps_per_epoch')!r} (format "
                f"{meta.get('format')!r}); this run has steps_per_epoch={steps_per_epoch}"
            )
        loop.update({k: meta[k] for k in loop})
        resumed_from = latest
    else:
        # The step donates its input; copying keeps the caller's arrays (params, a zero
        # carry also used by on_epoch_start) alive.
        state = jax.tree.map(jnp.copy, state)
    log = MetricsLog(out_dir / "metrics.jsonl", resume_lines=loop["metrics_lines"])
    tb = TensorBoardLog(out_dir / "tensorboard") if tensorboard else None
    step = int(state.step)
    sums: Sums | None = None  # made at the first step, from the saved sums when resuming
    saved_sums = (loop["interval_sums"] or {}, loop["epoch_sums"] or {})
    interval_steps, epoch_steps = loop["interval_steps"], loop["epoch_steps"]
    bar = ProgressBar(total_steps, initial=step, disable=True if progress is False else None)
    timed_steps, timed_secs, mark = 0, 0.0, time.perf_counter()
    run_steps, run_secs = 0, 0.0  # timed steps and their training time in this process
    compiled = False  # this process's first update compiles the train step: never timed

    def say(message: str) -> None:
        if verbose:
            bar.write(message)

    def emit(record: dict[str, Any]) -> None:
        log.write(record)
        if tb is not None:
            tb.scalars(record["step"], {k: v for k, v in record.items()
                                        if k not in ("step", "split")}, prefix=record["split"])

    def fetch() -> tuple[dict[str, float], dict[str, float]]:
        """Interval and epoch sums on the host; raises if any step so far was non-finite."""
        assert sums is not None
        host = jax.device_get(sums)
        if int(host["first_bad"]) >= 0:
            raise NonFiniteLossError(int(host["first_bad"]), steps_per_epoch,
                                     checkpointer.latest_step())
        interval = {name: float(v) for name, v in host["interval"].items()}
        epoch_sums = {name: float(v) for name, v in host["epoch"].items()}
        overflowed = sorted({name for values in (interval, epoch_sums)
                            for name in ("loss", "grad_norm")
                             if name in values and not math.isfinite(values[name])})
        if overflowed:  # every step finite, but their float32 sum is not
            raise NonFiniteLossError(step - 1, steps_per_epoch, checkpointer.latest_step(),
                                     f"running sum of {' and '.join(overflowed)} (overflow)")
        for values, count in ((interval, interval_steps), (epoch_sums, epoch_steps)):
            mean = values["loss"] / count if count else 0.0
            if math.isinf(perplexity(mean)):  # a finite loss whose exp overflows
                raise NonFiniteLossError(
                    step - 1, steps_per_epoch, checkpointer.latest_step(),
                    f"train perplexity (mean loss {mean:.6g} over the last {count} steps; "
                    "exp overflows)")
        return interval, epoch_sums

    def extras() -> dict[str, Any]:
        return dict(extra_metrics(state)) if extra_metrics is not None else {}

    def line(split: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Key order: where, loss/ppl, extras (lr), other metrics, timings."""
        record: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch,
                                  "split": split}
        record.update({k: values[k] for k in ("loss", "ppl") if k in values})
        record.update(extras())
        record.update({k: v for k, v in values.items() if k not in TIMING_KEYS})
        record.update({k: values[k] for k in TIMING_KEYS if k in values})
        return record

    try:
        while step < stop_step:
            epoch, index = divmod(step, steps_per_epoch)
            if index == 0 and on_epoch_start is not None:
                state = _call_on_epoch_start(on_epoch_start, state, epoch)
            state, metrics = train_step(state, get_batch(epoch, index))
            if "loss" not in metrics:
                raise KeyError(
                    f"run_training: train_step metrics have keys {sorted(metrics)}; "
                    "expected a 'loss' entry"
                )
            if sums is None:
                sums = {"interval": _filled(metrics, saved_sums[0]),
                        "epoch": _filled(metrics, saved_sums[1]),
                        "first_bad": jnp.full_like(jnp.asarray(metrics["loss"]), -1,
                                                   dtype=jnp.int32)}
            sums = _accumulate(sums, metrics, np.int32(step))
            step += 1
            interval_steps += 1
            epoch_steps += 1
            if compiled:
                timed_steps += 1
            else:
                jax.block_until_ready(sums)
                compiled, mark = True, time.perf_counter()
            bar.update()
            epoch_end = step % steps_per_epoch == 0
            if step % log_every == 0 or epoch_end:
                values = _means(fetch()[0], interval_steps)
                now = time.perf_counter()
                timed_secs += now - mark
                timings = {"wall_s": now - wall_start}
                if tokens_per_step is not None and timed_steps > 0:
                    timings["tokens_per_sec"] = tokens_per_step * timed_steps / max(
                        timed_secs, 1e-9)
                emit(line("train", {**values, **timings}))
                run_steps, run_secs = run_steps + timed_steps, run_secs + timed_secs
                bar.set_metrics(loss=values["loss"], ppl=values["ppl"], epoch=step /
                                steps_per_epoch, tokens_per_sec=timings.get("tokens_per_sec"))
                sums = {**sums, "interval": jax.tree.map(jnp.zeros_like, sums["interval"])}
                interval_steps, timed_steps, timed_secs = 0, 0, 0.0
                mark = time.perf_counter()  # writing the line is not training time
            if epoch_end:
                epoch_values = _means(fetch()[1], epoch_steps)
                emit(line("train_epoch", epoch_values))
                results = dict(evaluate_fn(state, epoch)) if evaluate_fn is not None else {}
                if results and all(isinstance(v, Mapping) for v in results.values()):
                    per_split = results
                else:
                    per_split = {"valid": results} if results else {}
                summary_bits = [f"train ppl {epoch_values['ppl']:.2f}"]
                for split, split_values in per_split.items():
                    split_values = dict(split_values)
                    if "loss" in split_values and "ppl" not in split_values:
                        split_values["ppl"] = perplexity(float(split_values["loss"]))
                    bad = [k for k in ("loss", "ppl") if k in split_values
                           and not math.isfinite(float(split_values[k]))]
                    if bad:
                        raise NonFiniteLossError(
                            step, steps_per_epoch, checkpointer.latest_step(),
                            f"{split} {' and '.join(bad)} "
                            f"({', '.join(f'{k} {split_values[k]}' for k in bad)})",
                            evaluation=True)
                    emit(line(split, {**split_values,
                                      "wall_s": time.perf_counter() - wall_start}))
                    if "ppl" in split_values:
                        summary_bits.append(f"{split} ppl {float(split_values['ppl']):.2f}")
                say(f"epoch {epoch + 1}/{num_epochs}: " + ", ".join(summary_bits))
                sums = {**sums, "epoch": jax.tree.map(jnp.zeros_like, sums["epoch"])}
                epoch_steps = 0
                mark = time.perf_counter()  # evaluation time is not training time
            if epoch_end or (ckpt_every is not None and step % ckpt_every == 0):
                interval_host, epoch_host = fetch()  # also the last finiteness check
                now = time.perf_counter()
                timed_secs += now - mark
                try:
                    checkpointer.save(step, state, require_finite=True, metadata={
                        "format": _FORMAT,
                        "step": step,
                        "epoch": step / steps_per_epoch,
                        "steps_per_epoch": steps_per_epoch,
                        "metrics_lines": log.lines_written,
                        "interval_sums": interval_host,
                        "interval_steps": interval_steps,
                        "epoch_sums": epoch_host,
                        "epoch_steps": epoch_steps,
                    })
                except NonFiniteStateError as err:
                    raise NonFiniteLossError(
                        step, steps_per_epoch, checkpointer.latest_step(),
                        f"state ({', '.join(err.leaves[:3])})") from None
                mark = time.perf_counter()
        if sums is not None:
            fetch()  # the returned state must be finite too (and its updates are done)
            if timed_steps > 0:  # updates after the last train line (max_steps)
                run_steps += timed_steps
                run_secs += timed_secs + time.perf_counter() - mark
    finally:
        bar.close()
        log.close()
        if tb is not None:
            tb.close()
        if own_checkpointer:
            checkpointer.close()

    records = read_metrics(out_dir / "metrics.jsonl")
    last: dict[str, dict[str, Any]] = {}
    for record in records:
        last[record["split"]] = record
    summary = {
        "step": step,
        "epoch": step / steps_per_epoch,
        "finished": step >= total_steps,
        "resumed_from": resumed_from,
        "train_ppl": last.get("train_epoch", {}).get("ppl"),
        "valid_ppl": last.get("valid", {}).get("ppl"),
        "tokens_per_sec": (tokens_per_step * run_steps / max(run_secs, 1e-9)
                           if tokens_per_step is not None and run_steps > 0 else None),
        "history": [r for r in records if r["split"] != "train"],
        "last": last,
        "wall_s": time.perf_counter() - wall_start,
    }
    return state, summary
