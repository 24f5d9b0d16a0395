"""Tests for jaxrnn.train.batching: stream windows for truncated BPTT and minibatches."""

import numpy as np
import pytest

from jaxrnn.data import DataError
from jaxrnn.train import StreamTooShortError, batchify, get_window, minibatches, num_windows


def test_batchify_drops_tail_and_keeps_rows_contiguous():
    ids = np.arange(23, dtype=np.int32)
    stream = batchify(ids, 4)
    assert stream.shape == (4, 5)
    assert stream.dtype == np.int32
    np.testing.assert_array_equal(stream[1], np.arange(5, 10))
    np.testing.assert_array_equal(stream.reshape(-1), np.arange(20))


def test_windows_match_zaremba_reader():
    # Zaremba's ptb_producer: x = data[:, i*n:(i+1)*n], y = data[:, i*n+1:(i+1)*n+1].
    ids = np.arange(2 * 11, dtype=np.int64)
    stream = batchify(ids, 2)  # batch_len 11
    assert num_windows(stream, 3) == 3  # (11 - 1) // 3
    for index in range(3):
        inputs, targets = get_window(stream, index, 3)
        assert inputs.shape == targets.shape == (2, 3)
        np.testing.assert_array_equal(inputs, stream[:, index * 3:(index + 1) * 3])
        np.testing.assert_array_equal(targets, inputs + 1)
    # The last target column of the last window exists in the stream.
    assert get_window(stream, 2, 3)[1][0, -1] == 9


def test_window_errors_name_sizes():
    stream = batchify(np.arange(8), 2)  # batch_len 4
    with pytest.raises(ValueError, match=r"batch_len=4.*bptt=4.*bptt \+ 1 = 5"):
        num_windows(stream, 4)
    with pytest.raises(ValueError, match=r"index=3 is out of range.*3 windows"):
        get_window(stream, 3, 1)
    with pytest.raises(StreamTooShortError, match=r"3 tokens is shorter than batch_size=4"
                                                  ) as info:
        batchify(np.arange(3), 4)
    # bad data for a script (exit 2), and still a ValueError for library callers
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match=r"ids has shape \(2, 2\)"):
        batchify(np.zeros((2, 2), np.int32), 1)
    with pytest.raises(ValueError, match="integer token ids"):
        batchify(np.zeros(4, np.float32), 1)


def test_minibatches_deterministic_per_seed_and_epoch():
    a = minibatches(10, 3, seed=1, epoch=0)
    assert a.shape == (3, 3)
    np.testing.assert_array_equal(a, minibatches(10, 3, seed=1, epoch=0))
    assert not np.array_equal(a, minibatches(10, 3, seed=1, epoch=1))
    assert not np.array_equal(a, minibatches(10, 3, seed=2, epoch=0))
    assert len(set(a.reshape(-1).tolist())) == 9
    full = minibatches(10, 3, seed=1, epoch=0, drop_last=False)
    assert full.shape == (4, 3)
    assert sorted(full.reshape(-1).tolist()) == [-1, -1] + list(range(10))
    with pytest.raises(ValueError, match=r"num_examples=2 < batch_size=3"):
        minibatches(2, 3, seed=0, epoch=0)
    with pytest.raises(ValueError, match=r"epoch must be an int >= 0; got -1"):
        minibatches(5, 1, seed=0, epoch=-1)
