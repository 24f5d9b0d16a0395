"""Tests for jaxrnn.data.images: IDX parsing, the digits loader, MNIST from local files."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from jaxrnn.data import ChecksumError, DataError, load_digits_dataset, load_mnist, read_idx
from jaxrnn.data import images as images_module


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_uint8(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(array, 0x08)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    result = read_idx(path)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, array)


def test_read_idx_big_endian_types(tmp_path):
    ints = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    (tmp_path / "i.idx").write_bytes(_idx_bytes(ints, 0x0C))
    result = read_idx(tmp_path / "i.idx")
    assert result.dtype == np.dtype(np.int32) and result.dtype.isnative
    np.testing.assert_array_equal(result, ints)
    floats = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    (tmp_path / "f.idx").write_bytes(_idx_bytes(floats, 0x0D))
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "not an IDX file"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00", "not an IDX file"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"\x00\x00", "type code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x00", "has 2 data bytes"),
    ],
)
def test_read_idx_bad_header(tmp_path, raw, match):
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "absent.idx")


def test_digits_shapes_range_and_stratification():
    train_x, train_y, test_x, test_y = load_digits_dataset(test_fraction=0.25, seed=0)
    assert train_x.shape[1:] == (8, 8) and test_x.shape[1:] == (8, 8)
    assert len(train_x) + len(test_x) == 1797
    assert len(test_x) == pytest.approx(0.25 * 1797, abs=1)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int32
    assert 0.0 <= train_x.min() and train_x.max() == 1.0
    train_share = np.bincount(train_y, minlength=10) / len(train_y)
    test_share = np.bincount(test_y, minlength=10) / len(test_y)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    again = load_digits_dataset(test_fraction=0.25, seed=0)
    np.testing.assert_array_equal(again.test_y, test_y)


def test_digits_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction=1.5"):
        load_digits_dataset(test_fraction=1.5)


def _write_fake_mnist(directory, n_train=6, n_test=4):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": (rng.integers(0, 256, (n_train, 28, 28)), 3),
        "train-labels-idx1-ubyte.gz": (rng.integers(0, 10, n_train), 1),
        "t10k-images-idx3-ubyte.gz": (rng.integers(0, 256, (n_test, 28, 28)), 3),
        "t10k-labels-idx1-ubyte.gz": (rng.integers(0, 10, n_test), 1),
    }
    md5s = {}
    directory.mkdir()
    for name, (array, _) in arrays.items():
        data = gzip.compress(_idx_bytes(array.astype(np.uint8), 0x08))
        (directory / name).write_bytes(data)
        md5s[name] = hashlib.md5(data).hexdigest()
    return arrays, md5s


def test_load_mnist_from_mirror(tmp_path, monkeypatch):
    """A dead first mirror falls through to the second; files are md5-checked and scaled."""
    source = tmp_path / "mirror"
    arrays, md5s = _write_fake_mnist(source)
    mirrors = ("http://127.0.0.1:1/", source.as_uri() + "/")
    monkeypatch.setitem(images_module.MNIST_SOURCES, "mnist", (mirrors, md5s))
    data = load_mnist("mnist", cache_dir=tmp_path / "cache")
    assert data.train_x.shape == (6, 28, 28) and data.test_x.shape == (4, 28, 28)
    assert data.train_x.dtype == np.float32 and data.test_y.dtype == np.int32
    np.testing.assert_allclose(
        data.train_x * 255, arrays["train-images-idx3-ubyte.gz"][0], atol=1e-3
    )
    np.testing.assert_array_equal(data.test_y, arrays["t10k-labels-idx1-ubyte.gz"][0])
    assert (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_load_mnist_data_dir_checks_md5(tmp_path):
    _write_fake_mnist(tmp_path / "mnist")
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz"):
        load_mnist("mnist", data_dir=tmp_path / "mnist")


def test_load_mnist_unknown_name():
    with pytest.raises(ValueError, match="unknown name='kmnist'"):
        load_mnist("kmnist")


def test_read_idx_header_whose_dimensions_overflow(tmp_path):
    path = tmp_path / "huge.idx"
    path.write_bytes(b"\x00\x00\x0d\x03" + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1)
                     + b"\x00" * 8)
    with pytest.raises(DataError, match=r"declares shape \(4294967295, 4294967295, "
                                        r"4294967295\).* more than max_bytes=") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    small = tmp_path / "small.idx"
    small.write_bytes(_idx_bytes(np.zeros((4, 4), np.uint8), 0x08))
    with pytest.raises(DataError, match="16 data bytes, more than max_bytes=8"):
        read_idx(small, max_bytes=8)


def test_read_idx_gzip_bomb_is_not_decompressed_whole(tmp_path):
    """A gzip whose header declares 10 bytes but which inflates to 64 MB of zeros."""
    path = tmp_path / "bomb.idx.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + struct.pack(">I", 10))
        zeros = bytes(1 << 20)
        for _ in range(64):
            f.write(zeros)
    assert path.stat().st_size < 200_000
    with pytest.raises(DataError, match=r"more than 10 data bytes \(decompressed\)") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    corrupt = tmp_path / "corrupt.idx.gz"
    corrupt.write_bytes(gzip.compress(_idx_bytes(np.zeros(100, np.uint8), 0x08))[:-12] + b"x")
    with pytest.raises(DataError, match=f"cannot read {corrupt}"):
        read_idx(corrupt)


def test_load_mnist_data_dir_missing_or_incomplete_is_an_error_unless_download(
        tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(images_module, "_fetch_from_mirrors", no_network)
    with pytest.raises(DataError, match=r"data_dir .*nowhere does not exist; place the four"):
        load_mnist("mnist", data_dir=tmp_path / "nowhere")
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    with pytest.raises(DataError, match=r"lacks train-labels-idx1-ubyte.gz, t10k-images"):
        load_mnist("mnist", data_dir=tmp_path / "part")
    with pytest.raises(AssertionError, match="must not download"):  # asked for: it downloads
        load_mnist("mnist", data_dir=tmp_path / "part", download=True)
