"""Image classification datasets as numpy arrays, for sequential-image RNN tasks.

Every loader returns an :class:`ImageDataset` ``(train_x, train_y, test_x, test_y)``: float32
images in ``[0, 1]`` of shape ``[N, height, width]`` and int32 labels of shape ``[N]``. Read row by
row (or pixel by pixel, after a reshape) they give the sequential (pixel-)MNIST tasks of
Le et al. 2015.
"""

from __future__ import annotations

import gzip
import math
import os
import pathlib
import zlib
from typing import NamedTuple

import numpy as np

from jaxrnn.data.download import fetch, verify
from jaxrnn.data.errors import DataError, DownloadError

__all__ = ["ImageDataset", "load_digits_dataset", "load_mnist", "read_idx"]


class ImageDataset(NamedTuple):
    """Train and test images (float32, ``[N, H, W]``, in [0, 1]) and labels (int32, ``[N]``)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def load_digits_dataset(test_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), split stratified.

    Bundled with scikit-learn, so it needs no download: a quick stand-in for MNIST in tests and
    smoke runs.

    Args:
        test_fraction: fraction of the images in the test split, in (0, 1).
        seed: seed of the split.

    Returns:
        Images ``[N, 8, 8]`` scaled from 0..16 to [0, 1], and labels; each class has the same
        share in both splits (up to rounding).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"load_digits_dataset: test_fraction={test_fraction!r}; expected in (0, 1)"
        )
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return ImageDataset(train_x, train_y, test_x, test_y)


# IDX format (LeCun et al.): magic = 0x00 0x00 <type code> <number of dimensions>, then one
# big-endian uint32 per dimension, then the data, big-endian, row-major.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike, *, max_bytes: int = 2**31) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not.

    The header is read first and the data size it declares is checked against ``max_bytes``
    and the file before the data is read, so a damaged header or a gzip bomb never makes it
    read (or decompress) more than ``header + max_bytes + 1`` bytes.

    Args:
        path: the file; gzip compression is detected from its first bytes.
        max_bytes: the largest data size accepted (default 2 GiB; MNIST's training images
            are 47 MB).

    Returns:
        The array, in native byte order, with the shape the header gives.

    Raises:
        DataError: naming the file, if it cannot be read, the header is malformed (bad magic
            number or type code), declares more than ``max_bytes`` of data, or the data size
            does not match the header's shape.
    """
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as raw_file:
            compressed = raw_file.read(2) == b"\x1f\x8b"
            raw_file.seek(0)
            f = gzip.GzipFile(fileobj=raw_file) if compressed else raw_file
            return _read_idx_stream(path, f, compressed, max_bytes)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"read_idx: cannot read {path}: {e}") from e


def _read_idx_stream(path: pathlib.Path, f, compressed: bool, max_bytes: int) -> np.ndarray:
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(
            f"read_idx: {path} is not an IDX file: magic number {head.hex() or '(empty)'}; "
            "expected 0000 then a type code and the number of dimensions"
        )
    type_code, ndim = head[2], head[3]
    if type_code not in _IDX_DTYPES:
        codes = ", ".join(f"0x{code:02x}" for code in _IDX_DTYPES)
        raise DataError(f"read_idx: {path} has IDX type code 0x{type_code:02x}; expected {codes}")
    header_bytes = 4 + 4 * ndim
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(
            f"read_idx: {path} is truncated: {4 + len(dims)} bytes, but its header declares "
            f"{ndim} dimensions ({header_bytes} header bytes)"
        )
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4", count=ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if expected > max_bytes:
        raise DataError(
            f"read_idx: {path} declares shape {shape} of {dtype}: {expected} data bytes, more "
            f"than max_bytes={max_bytes}; the header is damaged (or pass a larger max_bytes)"
        )
    if not compressed:
        got = os.fstat(f.fileno()).st_size - header_bytes
        if got != expected:
            raise DataError(
                f"read_idx: {path} has {got} data bytes; its header shape {shape} of {dtype} "
                f"needs {expected}"
            )
    data = f.read(expected + 1)  # one more byte shows trailing data
    if len(data) != expected:
        got = f"{len(data)}" if len(data) <= expected else f"more than {expected}"
        raise DataError(
            f"read_idx: {path} has {got} data bytes{' (decompressed)' if compressed else ''}; "
            f"its header shape {shape} of {dtype} needs {expected}"
        )
    array = np.frombuffer(data, dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# Mirrors and md5s as in torchvision.datasets.MNIST / FashionMNIST. The Fashion-MNIST S3 bucket is
# a website endpoint, which serves plain HTTP only; the md5 check protects the bytes.
MNIST_SOURCES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "mnist": (
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        dict(
            zip(
                _MNIST_FILES,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                strict=True,
            )
        ),
    ),
    "fashion_mnist": (
        (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        dict(
            zip(
                _MNIST_FILES,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                strict=True,
            )
        ),
    ),
}
"""name -> (mirror base URLs, tried in order; {file name: md5})."""


def _fetch_from_mirrors(
    name: str, filename: str, md5: str, cache_dir: str | os.PathLike | None, progress: bool
) -> pathlib.Path:
    mirrors, _ = MNIST_SOURCES[name]
    errors = []
    for base in mirrors:
        try:
            return fetch(
                base + filename,
                filename=f"{name}/{filename}",
                md5=md5,
                cache_dir=cache_dir,
                progress=progress,
            )
        except DownloadError as e:
            errors.append(str(e))
    raise DownloadError(f"{name}: every mirror failed for {filename}:\n" + "\n".join(errors))


def load_mnist(
    name: str = "mnist",
    cache_dir: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
    download: bool | None = None,
) -> ImageDataset:
    """MNIST or Fashion-MNIST: 60,000 training and 10,000 test 28x28 images, 10 classes.

    The four gzipped IDX files are taken from ``data_dir``, or, without one, downloaded (once)
    into the cache; either way their md5 digests are checked. A ``data_dir`` that does not
    exist or lacks a file is an error unless ``download=True``.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        cache_dir: download cache root (default: ``$JAXRNN_DATA`` or ``~/.cache/jaxrnn``).
        data_dir: optional directory already holding ``train-images-idx3-ubyte.gz``,
            ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
            ``t10k-labels-idx1-ubyte.gz``.
        progress: show download progress on stderr.
        download: whether files missing from ``data_dir`` may be downloaded; ``None``
            (default): only when no ``data_dir`` is given.

    Returns:
        Images ``[N, 28, 28]`` scaled from 0..255 to [0, 1], and labels.

    Raises:
        ValueError: for an unknown ``name``.
        DownloadError: if a file cannot be downloaded from any mirror.
        ChecksumError: if a file in ``data_dir`` has the wrong md5.
        DataError: if a file is malformed, images and labels disagree in number, or
            ``data_dir`` lacks a file and no download was asked for.
    """
    if name not in MNIST_SOURCES:
        raise ValueError(
            f"load_mnist: unknown name={name!r}; expected one of {sorted(MNIST_SOURCES)}"
        )
    _, md5s = MNIST_SOURCES[name]
    local = pathlib.Path(data_dir).expanduser() if data_dir is not None else None
    if download is None:
        download = local is None
    missing = [f for f in _MNIST_FILES if local is None or not (local / f).is_file()]
    if local is not None and not missing:
        paths = [verify(local / f, md5=md5s[f]) for f in _MNIST_FILES]
    elif local is not None and not download:
        where = "does not exist" if not local.is_dir() else f"lacks {', '.join(missing)}"
        raise DataError(
            f"load_mnist({name!r}): data_dir {local} {where}; place the four files "
            f"{', '.join(_MNIST_FILES)} there (--data-dir), or pass download=True (drop "
            "--data-dir) to download them into the cache"
        )
    else:
        paths = [_fetch_from_mirrors(name, f, md5s[f], cache_dir, progress) for f in _MNIST_FILES]
    train_images, train_labels, test_images, test_labels = (read_idx(p) for p in paths)
    for images, labels, image_path, label_path in (
        (train_images, train_labels, paths[0], paths[1]),
        (test_images, test_labels, paths[2], paths[3]),
    ):
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(
                f"load_mnist: {image_path} has shape {images.shape} and {label_path} has shape "
                f"{labels.shape}; expected [N, H, W] images and [N] labels"
            )
    return ImageDataset(
        (train_images / np.float32(255.0)).astype(np.float32),
        train_labels.astype(np.int32),
        (test_images / np.float32(255.0)).astype(np.float32),
        test_labels.astype(np.int32),
    )
