"""Tests for jaxrnn.data.text: tokenisation, vocabulary order, corpus loading and its errors."""

import hashlib
import pathlib

import numpy as np
import pytest

from jaxrnn.data import (
    EOS,
    ChecksumError,
    DataError,
    Vocabulary,
    load_word_corpus,
    read_tokens,
)
from jaxrnn.data import text as text_module

TRAIN = " the cat sat \n the dog sat \n\n a cat \n"
VALID = " the cat \n a dog sat \n"
TEST = " dog \n"


def _write_ptb(directory: pathlib.Path, train=TRAIN, valid=VALID, test=TEST) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in (("train", train), ("valid", valid), ("test", test)):
        (directory / f"ptb.{name}.txt").write_text(content, encoding="utf-8")
    return directory


def test_read_tokens_appends_eos_per_line_including_empty_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TRAIN, encoding="utf-8")
    assert read_tokens(path) == [
        "the", "cat", "sat", EOS, "the", "dog", "sat", EOS, EOS, "a", "cat", EOS,
    ]  # fmt: skip


def test_read_tokens_last_line_without_newline(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a b\nc", encoding="utf-8")
    assert read_tokens(path) == ["a", "b", EOS, "c", EOS]


def test_vocabulary_order_is_count_then_alphabetical():
    tokens = read_tokens_from_string(TRAIN)
    vocab = Vocabulary.from_tokens(tokens)
    # counts: <eos> 4, cat 2, sat 2, the 2, a 1, dog 1.
    assert vocab.words == (EOS, "cat", "sat", "the", "a", "dog")
    assert len(vocab) == 6
    assert vocab.index("sat") == 2
    ids = vocab.encode(["the", "dog", EOS])
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [3, 5, 0])
    assert vocab.decode(ids) == ["the", "dog", EOS]
    assert "dog" in vocab and "bird" not in vocab


def read_tokens_from_string(content: str) -> list[str]:
    tokens = []
    for line in content.splitlines():
        tokens += line.split() + [EOS]
    return tokens


def test_vocabulary_errors():
    vocab = Vocabulary(("a", "b"))
    with pytest.raises(KeyError, match="'c' is not in the vocabulary"):
        vocab.index("c")
    with pytest.raises(KeyError, match="token 'c' at position 1"):
        vocab.encode(["a", "c"])
    with pytest.raises(IndexError, match="id 2 is out of range"):
        vocab.decode([0, 2])
    with pytest.raises(ValueError, match="duplicates"):
        Vocabulary(("a", "a"))


def test_vocabulary_is_a_sequence_of_its_words():
    vocab = Vocabulary.from_tokens(["b", "a", "b", EOS])
    assert list(vocab) == ["b", "<eos>", "a"] == list(vocab.words)
    assert [vocab.index(word) for word in vocab] == [0, 1, 2]
    assert dict(enumerate(vocab)) == {0: "b", 1: "<eos>", 2: "a"}
    assert vocab[2] == "a" and vocab[-1] == "a" and vocab[np.int32(1)] == EOS
    assert sorted(vocab) == ["<eos>", "a", "b"]
    with pytest.raises(IndexError, match=r"id 3 is out of range \[0, 3\)"):
        vocab[3]
    with pytest.raises(TypeError, match="expected an int id"):
        vocab["a"]


def test_load_from_data_dir(tmp_path):
    corpus = load_word_corpus("ptb", _write_ptb(tmp_path / "ptb"), download=False, verify=False)
    vocab = corpus.vocab
    assert vocab.words == (EOS, "cat", "sat", "the", "a", "dog")
    for array in (corpus.train, corpus.valid, corpus.test):
        assert array.dtype == np.int32 and array.ndim == 1
    assert len(corpus.train) == 12 and len(corpus.valid) == 7 and len(corpus.test) == 2
    assert int(np.sum(corpus.train == vocab.index(EOS))) == 4
    assert vocab.decode(corpus.valid) == ["the", "cat", EOS, "a", "dog", "sat", EOS]


def test_data_dir_files_are_verified_by_default(tmp_path):
    data_dir = _write_ptb(tmp_path / "ptb")
    with pytest.raises(ChecksumError, match="ptb.train.txt") as info:
        load_word_corpus("ptb", data_dir, download=False)
    assert text_module.WORD_CORPORA["ptb"].splits["train"].sha256 in str(info.value)


def test_missing_split_without_download(tmp_path):
    data_dir = _write_ptb(tmp_path / "ptb")
    (data_dir / "ptb.valid.txt").unlink()
    with pytest.raises(DataError, match=r"valid split is missing: .*ptb\.valid\.txt"):
        load_word_corpus("ptb", data_dir, download=False, verify=False)
    with pytest.raises(DataError, match="no data_dir given"):
        load_word_corpus("ptb", download=False)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    data_dir = _write_ptb(tmp_path / "ptb", test=content)
    with pytest.raises(DataError, match=r"ptb\.test\.txt is empty"):
        load_word_corpus("ptb", data_dir, download=False, verify=False)


def test_unknown_token_names_token_file_and_line(tmp_path):
    data_dir = _write_ptb(tmp_path / "ptb", valid=" the cat \n a bird sat \n")
    with pytest.raises(DataError) as info:
        load_word_corpus("ptb", data_dir, download=False, verify=False)
    message = str(info.value)
    assert "'bird'" in message
    assert str(data_dir / "ptb.valid.txt") in message
    assert "line 2" in message


def test_unknown_corpus_name():
    with pytest.raises(ValueError, match=r"unknown corpus name='ptb2'.*'wikitext2'"):
        load_word_corpus("ptb2")


def test_download_path_uses_fetch_with_checksums(tmp_path, monkeypatch):
    """Without data_dir the splits come from fetch(), into the cache, with their sha256."""
    source = _write_ptb(tmp_path / "source")
    specs = text_module.WORD_CORPORA["ptb"].splits
    patched = {
        split: text_module._Split(
            spec.filename,
            "http://example.invalid/" + spec.filename,
            hashlib.sha256((source / spec.filename).read_bytes()).hexdigest(),
        )
        for split, spec in specs.items()
    }
    monkeypatch.setitem(text_module.WORD_CORPORA, "ptb", text_module._CorpusSpec("test", patched))
    calls = []

    def fake_fetch(url, *, filename, sha256=None, md5=None, cache_dir=None, progress=False):
        calls.append((url, filename, sha256, cache_dir))
        destination = pathlib.Path(cache_dir) / filename
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((source / pathlib.Path(filename).name).read_bytes())
        return destination

    monkeypatch.setattr(text_module, "fetch", fake_fetch)
    cache = tmp_path / "cache"
    corpus = load_word_corpus("ptb", cache_dir=cache)
    assert len(corpus.vocab) == 6 and len(corpus.train) == 12
    assert [c[1] for c in calls] == ["ptb/ptb.train.txt", "ptb/ptb.valid.txt", "ptb/ptb.test.txt"]
    assert all(
        c[2] == patched[s].sha256 for c, s in zip(calls, ("train", "valid", "test"), strict=True)
    )
    assert all(c[3] == cache for c in calls)

    # A data_dir that lacks a split: an error naming the file, unless the download is
    # asked for, which then fetches that split only.
    calls.clear()
    partial = _write_ptb(tmp_path / "partial")
    (partial / "ptb.test.txt").unlink()
    with pytest.raises(DataError, match=r"test split is missing: .*partial/ptb.test.txt does "
                                        r"not exist \(and no download was asked for\)"):
        load_word_corpus("ptb", partial, cache_dir=cache, verify=False)
    with pytest.raises(DataError, match=r"data_dir .*does_not_exist is not a directory"):
        load_word_corpus("ptb", tmp_path / "does_not_exist", cache_dir=cache)
    assert calls == []
    load_word_corpus("ptb", partial, cache_dir=cache, verify=False, download=True)
    assert [c[1] for c in calls] == ["ptb/ptb.test.txt"]


def test_known_corpora_table():
    ptb = text_module.WORD_CORPORA["ptb"].splits
    wiki = text_module.WORD_CORPORA["wikitext2"].splits
    assert [s.filename for s in ptb.values()] == ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"]
    assert [s.filename for s in wiki.values()] == [
        "wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens",
    ]  # fmt: skip
    for spec in (*ptb.values(), *wiki.values()):
        assert spec.url.startswith("https://") and len(spec.sha256) == 64


def test_download_path_end_to_end_with_file_urls(tmp_path, monkeypatch):
    """The real fetch (urllib, file:// URLs): downloaded, verified, cached, then reused."""
    source = _write_ptb(tmp_path / "source")
    patched = {
        split: text_module._Split(
            spec.filename,
            (source / spec.filename).as_uri(),
            hashlib.sha256((source / spec.filename).read_bytes()).hexdigest(),
        )
        for split, spec in text_module.WORD_CORPORA["ptb"].splits.items()
    }
    monkeypatch.setitem(text_module.WORD_CORPORA, "ptb", text_module._CorpusSpec("t", patched))
    monkeypatch.setenv("JAXRNN_DATA", str(tmp_path / "cache"))
    corpus = load_word_corpus("ptb")
    assert (tmp_path / "cache" / "ptb" / "ptb.train.txt").read_text() == TRAIN
    for path in source.iterdir():
        path.unlink()
    again = load_word_corpus("ptb")  # served from the cache
    np.testing.assert_array_equal(again.train, corpus.train)
