"""Data layer: dataset readers, checksummed downloads and synthetic corpora.

Everything here returns numpy arrays and imports nothing from the model side of jaxrnn.

* :mod:`~jaxrnn.data.download`: :func:`fetch` (cached, checksummed, atomic) and :func:`verify`.
* :mod:`~jaxrnn.data.text`: Penn Treebank and WikiText-2 as int32 token ids.
* :mod:`~jaxrnn.data.synthetic`: Markov-chain corpora with a known entropy rate.
* :mod:`~jaxrnn.data.images`: scikit-learn digits, MNIST, Fashion-MNIST, IDX files.
* :mod:`~jaxrnn.data.errors`: :class:`DataError` and its subclasses.
"""

from jaxrnn.data.download import cache_dir, fetch, file_digest, verify
from jaxrnn.data.errors import ChecksumError, DataError, DownloadError
from jaxrnn.data.images import ImageDataset, load_digits_dataset, load_mnist, read_idx
from jaxrnn.data.synthetic import markov_corpus, stationary_distribution
from jaxrnn.data.text import (
    EOS,
    WORD_CORPORA,
    Corpus,
    Vocabulary,
    load_word_corpus,
    read_tokens,
)

__all__ = [
    "EOS",
    "WORD_CORPORA",
    "ChecksumError",
    "Corpus",
    "DataError",
    "DownloadError",
    "ImageDataset",
    "Vocabulary",
    "cache_dir",
    "fetch",
    "file_digest",
    "load_digits_dataset",
    "load_mnist",
    "load_word_corpus",
    "markov_corpus",
    "read_idx",
    "read_tokens",
    "stationary_distribution",
    "verify",
]
