"""Batching for training loops: token streams for truncated BPTT, shuffled minibatches.

The stream layout is the one of Zaremba et al. (2014)'s TensorFlow PTB reader
(``ptb_producer``): the token stream is cut into ``batch_size`` contiguous rows, and window
``i`` takes columns ``[i * bptt, (i + 1) * bptt)`` as inputs and the same columns shifted by
one as targets. Row ``b`` of window ``i + 1`` continues row ``b`` of window ``i``, so the
recurrent carry can be passed from one window to the next.

Every function here is random access (window ``index``, minibatch ``epoch``), so a resumed
run can start in the middle of an epoch without replaying the data before it.
"""

from __future__ import annotations

import numpy as np

from jaxrnn.data.errors import DataError

__all__ = ["batchify", "get_window", "minibatches", "num_windows"]


class StreamTooShortError(DataError, ValueError):
    """A token stream (a data split) has fewer tokens than the batch has rows. A
    :class:`jaxrnn.data.DataError`, so scripts report it as bad data (exit 2)."""


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Cuts a 1-D token stream into ``batch_size`` contiguous rows.

    ``batch_len = len(ids) // batch_size``; the last ``len(ids) % batch_size`` tokens are
    dropped, as in Zaremba et al.'s reader.

    Args:
        ids: integer token ids, shape ``[num_tokens]``.
        batch_size: number of rows (parallel streams), at least 1.

    Returns:
        An array ``[batch_size, batch_len]`` with the dtype of ``ids``; row ``b`` is
        ``ids[b * batch_len:(b + 1) * batch_len]``.

    Raises:
        ValueError: if ``ids`` is not 1-D and integer, or ``batch_size < 1``.
        StreamTooShortError: (a ``ValueError`` and a ``DataError``) if the stream has fewer
            tokens than ``batch_size``.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"batchify: ids has shape {ids.shape}; expected a 1-D token stream")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"batchify: ids has dtype {ids.dtype}; expected integer token ids")
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batchify: batch_size must be a positive int; got {batch_size!r}")
    batch_len = ids.shape[0] // batch_size
    if batch_len == 0:
        raise StreamTooShortError(
            f"batchify: a stream of {ids.shape[0]} tokens is shorter than "
            f"batch_size={batch_size}; need at least batch_size tokens (a smaller "
            "--batch-size, or a longer split)"
        )
    return ids[: batch_size * batch_len].reshape(batch_size, batch_len)


def _check_stream(stream: np.ndarray, bptt: int, caller: str) -> None:
    if stream.ndim != 2:
        raise ValueError(
            f"{caller}: stream has shape {stream.shape}; expected [batch_size, batch_len] "
            "as returned by batchify"
        )
    if not isinstance(bptt, int | np.integer) or bptt < 1:
        raise ValueError(f"{caller}: bptt must be a positive int; got {bptt!r}")
    batch_len = stream.shape[1]
    if (batch_len - 1) // bptt < 1:
        raise ValueError(
            f"{caller}: stream of shape {stream.shape} (batch_len={batch_len}) is too short "
            f"for one window of bptt={bptt}; need batch_len >= bptt + 1 = {bptt + 1}"
        )


def num_windows(stream: np.ndarray, bptt: int) -> int:
    """Number of full TBPTT windows per epoch: ``(batch_len - 1) // bptt``.

    The ``- 1`` leaves room for the last window's shifted targets (Zaremba's
    ``epoch_size = (batch_len - 1) // num_steps``).

    Args:
        stream: ``[batch_size, batch_len]`` from :func:`batchify`.
        bptt: window length (``num_steps`` in Zaremba's code).

    Returns:
        The number of windows, at least 1.

    Raises:
        ValueError: if the stream is not 2-D or is too short for one window.
    """
    stream = np.asarray(stream)
    _check_stream(stream, bptt, "num_windows")
    return (stream.shape[1] - 1) // bptt


def get_window(stream: np.ndarray, index: int, bptt: int) -> tuple[np.ndarray, np.ndarray]:
    """Window ``index`` of a batchified stream.

    Args:
        stream: ``[batch_size, batch_len]`` from :func:`batchify`.
        index: window index in ``[0, num_windows(stream, bptt))``.
        bptt: window length.

    Returns:
        ``(inputs, targets)``, each ``[batch_size, bptt]``:
        ``inputs = stream[:, index * bptt:(index + 1) * bptt]`` and ``targets`` the same
        columns shifted right by one.

    Raises:
        ValueError: if ``index`` is out of range or the stream is too short.
    """
    stream = np.asarray(stream)
    _check_stream(stream, bptt, "get_window")
    count = (stream.shape[1] - 1) // bptt
    if not isinstance(index, int | np.integer) or not 0 <= index < count:
        raise ValueError(
            f"get_window: index={index!r} is out of range; stream {stream.shape} with "
            f"bptt={bptt} has {count} windows (valid indices 0..{count - 1})"
        )
    start = int(index) * bptt
    return stream[:, start : start + bptt], stream[:, start + 1 : start + bptt + 1]


def minibatches(
    num_examples: int,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    drop_last: bool = True,
) -> np.ndarray:
    """Shuffled example indices for one epoch, deterministic in ``(seed, epoch)``.

    The permutation comes from ``numpy.random.default_rng([seed, epoch])``, so epoch ``e``
    of a resumed run sees the same order as epoch ``e`` of an uninterrupted one.

    Args:
        num_examples: dataset size, at least 1.
        batch_size: examples per minibatch, at least 1.
        seed: non-negative base seed.
        epoch: non-negative epoch number.
        drop_last: drop the final partial minibatch (keeps every batch the same shape, so
            the train step compiles once). With ``False`` a partial last batch is padded
            with ``-1``, which the caller must mask.

    Returns:
        An int64 array ``[num_batches, batch_size]`` of indices into the dataset.

    Raises:
        ValueError: on non-positive sizes, negative seed/epoch, or (with ``drop_last``)
            fewer than ``batch_size`` examples.
    """
    for name, value, low in (
        ("num_examples", num_examples, 1),
        ("batch_size", batch_size, 1),
        ("seed", seed, 0),
        ("epoch", epoch, 0),
    ):
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"minibatches: {name} must be an int >= {low}; got {value!r}")
    if drop_last and num_examples < batch_size:
        raise ValueError(
            f"minibatches: num_examples={num_examples} < batch_size={batch_size} with "
            "drop_last=True gives no batch; lower batch_size or pass drop_last=False"
        )
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(num_examples)
    if drop_last:
        num_batches = num_examples // batch_size
        return order[: num_batches * batch_size].reshape(num_batches, batch_size)
    num_batches = -(-num_examples // batch_size)
    padded = np.full(num_batches * batch_size, -1, dtype=np.int64)
    padded[:num_examples] = order
    return padded.reshape(num_batches, batch_size)
