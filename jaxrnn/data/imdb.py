"""The IMDB movie-review sentiment dataset (Maas et al., 2011) as padded token ids and lengths.

Maas, Daly, Pham, Huang, Ng & Potts, "Learning Word Vectors for Sentiment Analysis", ACL 2011:
25,000 training and 25,000 test reviews, half positive (rating >= 7), half negative (<= 4).
The archive ``aclImdb_v1.tar.gz`` (84 MB) is downloaded once into the cache by
:func:`jaxrnn.data.fetch` and md5-checked; the reviews are read straight from it (or from an
extracted ``aclImdb/`` folder). The ``unsup`` reviews are not used.

Text to ids: lower-cased, ``<br />`` tags dropped, words are runs of letters and digits with an
optional apostrophe suffix (``don't``, ``film's``). The vocabulary is built from the training
split only (the test split never influences it): id 0 is ``<pad>``, id 1 ``<unk>`` (any word
outside it), then the ``max_vocab - 2`` most frequent training words (ties alphabetical). Reviews
longer than ``max_len`` words are cut, keeping their end (``truncate="tail"``, as Keras'
``pad_sequences`` default) or their beginning (``"head"``). Every sequence is stored with its
length, so a lengths-aware scan never runs the recurrence over the padding.
"""

from __future__ import annotations

import collections
import os
import pathlib
import re
import tarfile
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from jaxrnn.data.download import fetch, verify
from jaxrnn.data.errors import DataError
from jaxrnn.data.text import Vocabulary

__all__ = [
    "IMDB_MD5",
    "IMDB_URL",
    "PAD",
    "UNK",
    "Reviews",
    "TextClassification",
    "build_vocabulary",
    "encode",
    "fetch_imdb",
    "load_imdb",
    "make_text_classification",
    "read_imdb",
    "synthetic_reviews",
    "tokenize",
]

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
IMDB_FILENAME = "imdb/aclImdb_v1.tar.gz"
PAD, UNK = "<pad>", "<unk>"

_TAG = re.compile(r"<[^>]+>")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


class Reviews(NamedTuple):
    """Raw texts and their labels (int32, 1 = positive, 0 = negative)."""

    texts: list[str]
    labels: np.ndarray


class TextClassification(NamedTuple):
    """Padded token ids ``[N, max_len]`` (int32, 0 = ``<pad>``), lengths ``[N]`` (int32, at
    least 1) and labels ``[N]`` (int32) of both splits, and the training vocabulary."""

    train_ids: np.ndarray
    train_lengths: np.ndarray
    train_labels: np.ndarray
    test_ids: np.ndarray
    test_lengths: np.ndarray
    test_labels: np.ndarray
    vocab: Vocabulary


def tokenize(text: str) -> list[str]:
    """Lower-cased words of a review, HTML tags (``<br />``) removed."""
    return _WORD.findall(_TAG.sub(" ", text.lower()))


def build_vocabulary(token_lists: Iterable[Sequence[str]], max_size: int,
                     min_count: int = 1) -> Vocabulary:
    """``<pad>``, ``<unk>``, then the most frequent words (ties alphabetical).

    Args:
        token_lists: the tokenised training texts (only the training split!).
        max_size: at most this many entries, ``<pad>`` and ``<unk>`` included; >= 3.
        min_count: drop words seen fewer times.

    Returns:
        The vocabulary; ``<pad>`` has id 0 and ``<unk>`` id 1.
    """
    if not isinstance(max_size, int) or max_size < 3:
        raise ValueError(f"build_vocabulary: max_size must be an int >= 3; got {max_size!r}")
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"build_vocabulary: min_count must be an int >= 1; got {min_count!r}")
    counts = collections.Counter(word for tokens in token_lists for word in tokens)
    counts.pop(PAD, None)
    counts.pop(UNK, None)
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return Vocabulary((PAD, UNK, *words[: max_size - 2]))


def encode(token_lists: Sequence[Sequence[str]], vocab: Vocabulary, max_len: int,
           truncate: str = "tail") -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> ``(ids [N, max_len] int32, lengths [N] int32)``, padded with 0 at the end.

    An empty text becomes one ``<unk>`` (length 1), so every sequence has a valid last step.

    Args:
        token_lists: tokenised texts.
        vocab: from :func:`build_vocabulary` (``<pad>`` = 0, ``<unk>`` = 1).
        max_len: the longest kept sequence; longer texts are cut.
        truncate: ``"tail"`` keeps the last ``max_len`` words, ``"head"`` the first.
    """
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"encode: max_len must be a positive int; got {max_len!r}")
    if truncate not in ("head", "tail"):
        raise ValueError(f"encode: truncate={truncate!r}; expected 'head' or 'tail'")
    if vocab.words[:2] != (PAD, UNK):
        raise ValueError(f"encode: vocab starts with {vocab.words[:2]}; expected ('<pad>', "
                         "'<unk>') as build_vocabulary makes")
    ids = np.zeros((len(token_lists), max_len), np.int32)
    lengths = np.zeros(len(token_lists), np.int32)
    lookup = {word: i for i, word in enumerate(vocab.words)}
    for i, tokens in enumerate(token_lists):
        row = [lookup.get(word, 1) for word in tokens] or [1]
        row = row[-max_len:] if truncate == "tail" else row[:max_len]
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    return ids, lengths


def make_text_classification(train: Reviews, test: Reviews, *, max_vocab: int, max_len: int,
                             truncate: str = "tail", min_count: int = 1) -> TextClassification:
    """Tokenises both splits, builds the vocabulary from ``train`` only, and encodes both."""
    train_tokens = [tokenize(t) for t in train.texts]
    test_tokens = [tokenize(t) for t in test.texts]
    vocab = build_vocabulary(train_tokens, max_vocab, min_count)
    train_ids, train_lengths = encode(train_tokens, vocab, max_len, truncate)
    test_ids, test_lengths = encode(test_tokens, vocab, max_len, truncate)
    return TextClassification(train_ids, train_lengths, np.asarray(train.labels, np.int32),
                              test_ids, test_lengths, np.asarray(test.labels, np.int32), vocab)


_MAX_REVIEW_BYTES = 1 << 20
"""The largest review file :func:`read_imdb` accepts (IMDB's longest is about 14 kB)."""


def read_imdb(path: str | os.PathLike, *,
              expected_per_split: int | None = 25_000) -> tuple[Reviews, Reviews]:
    """Reads the labelled reviews from ``aclImdb_v1.tar.gz`` or an extracted ``aclImdb`` folder.

    Args:
        path: the archive, the extracted ``aclImdb`` folder, or a folder containing it.
        expected_per_split: reviews each split must have (catches a truncated copy); ``None``
            accepts any non-zero number.

    Returns:
        ``(train, test)``, each ordered by (label, review id): negatives first.

    Raises:
        DataError: if ``path`` cannot be read or does not hold ``expected_per_split`` reviews
            in each split.
    """
    path = pathlib.Path(path)
    found: dict[str, list[tuple[int, int, str]]] = {"train": [], "test": []}
    try:
        if path.is_file():
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    match = _MEMBER.search(member.name)
                    if match and member.isfile():
                        if member.size > _MAX_REVIEW_BYTES:
                            raise DataError(
                                f"read_imdb: {path} member {member.name} is {member.size} "
                                f"bytes; a review is at most {_MAX_REVIEW_BYTES} (a damaged "
                                "or different archive)")
                        data = archive.extractfile(member).read(_MAX_REVIEW_BYTES)
                        data = data.decode("utf-8")
                        split, label, number = match[1], int(match[2] == "pos"), int(match[3])
                        found[split].append((label, number, data))
        else:
            root = path if (path / "train").is_dir() else path / "aclImdb"
            for split in found:
                for label_name in ("neg", "pos"):
                    for file in (root / split / label_name).glob("*.txt"):
                        match = _MEMBER.search(file.as_posix())
                        if match and file.stat().st_size > _MAX_REVIEW_BYTES:
                            raise DataError(
                                f"read_imdb: {file} is {file.stat().st_size} bytes; a review "
                                f"is at most {_MAX_REVIEW_BYTES}")
                        if match:
                            found[split].append((int(label_name == "pos"), int(match[3]),
                                                 file.read_text(encoding="utf-8")))
    except (OSError, tarfile.TarError, UnicodeDecodeError, EOFError) as e:
        raise DataError(f"read_imdb: cannot read {path}: {e}") from e
    counts = {split: len(items) for split, items in found.items()}
    wrong = [n for n in counts.values()
             if n == 0 or (expected_per_split is not None and n != expected_per_split)]
    if wrong:
        want = "at least 1" if expected_per_split is None else str(expected_per_split)
        raise DataError(
            f"read_imdb: {path} holds {counts['train']} training and {counts['test']} test "
            f"reviews; expected {want} in each (aclImdb/{{train,test}}/{{pos,neg}}/*.txt)"
        )
    splits = []
    for split in ("train", "test"):
        items = sorted(found[split], key=lambda item: item[:2])
        splits.append(Reviews([text for _, _, text in items],
                              np.asarray([label for label, _, _ in items], np.int32)))
    return splits[0], splits[1]


def fetch_imdb(*, data_dir: str | os.PathLike | None = None,
               cache_dir: str | os.PathLike | None = None, url: str = IMDB_URL,
               progress: bool = False, download: bool | None = None) -> pathlib.Path:
    """The local copy of the dataset: from ``data_dir``, or, without one, downloaded.

    Args:
        data_dir: a folder holding ``aclImdb_v1.tar.gz`` (md5-checked) or the extracted
            ``aclImdb/`` folder; ``None``: download. A folder with neither is an error unless
            ``download=True``.
        cache_dir: download cache root (default ``$JAXRNN_DATA`` or ``~/.cache/jaxrnn``).
        url: where to download the archive from (a mirror, or ``file://`` for a local copy).
        progress: show download progress on stderr.
        download: whether to download when ``data_dir`` holds no copy; ``None`` (default):
            only when no ``data_dir`` is given.

    Returns:
        The archive's or the extracted folder's path, for :func:`read_imdb`.

    Raises:
        DownloadError: no network, an HTTP error, or a checksum mismatch; the message says
            where to put a manually downloaded copy.
        ChecksumError: an archive in ``data_dir`` has the wrong md5.
    """
    if data_dir is not None:
        local = pathlib.Path(data_dir).expanduser()
        if (local / "aclImdb" / "train").is_dir() or (local / "train" / "pos").is_dir():
            return local
        if (local / "aclImdb_v1.tar.gz").is_file():
            return verify(local / "aclImdb_v1.tar.gz", md5=IMDB_MD5)
        if not download:
            where = "does not exist" if not local.is_dir() else (
                "holds neither aclImdb_v1.tar.gz nor an extracted aclImdb/ folder")
            raise DataError(
                f"fetch_imdb: data_dir {local} {where}; put the archive or the extracted "
                "folder there (--data-dir), or pass download=True (drop --data-dir) to "
                "download it into the cache"
            )
    return fetch(url, filename=IMDB_FILENAME, md5=IMDB_MD5, cache_dir=cache_dir,
                 progress=progress)


def load_imdb(*, max_vocab: int = 20_000, max_len: int = 400, truncate: str = "tail",
              min_count: int = 1, data_dir: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, url: str = IMDB_URL,
              progress: bool = False, download: bool | None = None) -> TextClassification:
    """IMDB reviews as padded ids and lengths, vocabulary from the training split only.

    See :func:`fetch_imdb` for where the data comes from and :func:`encode` for the encoding.

    Raises:
        DataError: (or its subclasses) if the data cannot be had or read.
    """
    train, test = read_imdb(fetch_imdb(data_dir=data_dir, cache_dir=cache_dir, url=url,
                                       progress=progress, download=download))
    return make_text_classification(train, test, max_vocab=max_vocab, max_len=max_len,
                                    truncate=truncate, min_count=min_count)


_POSITIVE = ("great", "excellent", "wonderful", "superb", "loved", "brilliant", "moving",
             "delightful", "masterpiece", "enjoyable")
_NEGATIVE = ("awful", "terrible", "boring", "worst", "dull", "waste", "mess", "hated",
             "pointless", "disappointing")


def synthetic_reviews(num_train: int, num_test: int, *, seed: int = 0,
                      min_words: int = 4, max_words: int = 60) -> tuple[Reviews, Reviews]:
    """Generated "reviews" with a known answer, for smoke runs and tests (no download).

    Each text is ``min_words..max_words`` filler words ("w0" ... "w299", Zipf-like) with 2-3
    sentiment words of its class (positive or negative) and one of the other class, placed at
    random positions, so the label is the majority sentiment word: learnable, but only by
    looking at the words, wherever they are.

    Returns:
        ``(train, test)`` :class:`Reviews`, labels balanced in expectation.
    """
    for name, value in (("num_train", num_train), ("num_test", num_test),
                        ("min_words", min_words), ("max_words", max_words)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"synthetic_reviews: {name} must be a positive int; got {value!r}")
    if max_words < min_words + 4:
        raise ValueError(f"synthetic_reviews: max_words={max_words} must be >= min_words + 4 = "
                         f"{min_words + 4}")
    rng = np.random.default_rng(seed)
    filler = np.array([f"w{i}" for i in range(300)])
    zipf = 1.0 / np.arange(1, 301)
    zipf /= zipf.sum()

    def make(count: int) -> Reviews:
        texts, labels = [], rng.integers(0, 2, count).astype(np.int32)
        for label in labels:
            words = list(rng.choice(filler, rng.integers(min_words, max_words - 3), p=zipf))
            own, other = (_POSITIVE, _NEGATIVE) if label else (_NEGATIVE, _POSITIVE)
            extra = [*rng.choice(own, rng.integers(2, 4)), rng.choice(other)]
            for word in extra:
                words.insert(int(rng.integers(0, len(words) + 1)), str(word))
            texts.append(" ".join(words))
        return Reviews(texts, labels)

    return make(num_train), make(num_test)
