"""One download helper for every dataset: a checksummed, atomic, cached ``fetch`` (pooch).

:func:`fetch` downloads with :func:`pooch.retrieve`: the bytes go to a temporary file in the
destination directory, their digests are checked, and only then is the file moved into place, so
the cache never holds a half-written or corrupt file: after a failure (network error, HTTP error,
checksum mismatch, Ctrl-C) nothing is left behind. ``file://`` URLs (a local mirror) are copied
through the same checks.

The cache directory is ``$JAXRNN_DATA`` if set, else ``~/.cache/jaxrnn``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pooch
import requests

from jaxrnn.data.errors import ChecksumError, DownloadError

__all__ = ["cache_dir", "fetch", "file_digest", "verify"]

_ENV_VAR = "JAXRNN_DATA"
_CHUNK_BYTES = 1 << 20
_HEX = {"sha256": re.compile(r"[0-9a-f]{64}"), "md5": re.compile(r"[0-9a-f]{32}")}


def cache_dir() -> pathlib.Path:
    """Returns the default data cache directory.

    Returns:
        ``$JAXRNN_DATA`` if that environment variable is set and non-empty, else
        ``~/.cache/jaxrnn``. The directory is not created.
    """
    env = os.environ.get(_ENV_VAR, "")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "jaxrnn"


_default_cache_dir = cache_dir  # ``fetch`` has an argument of the same name.


def _expected_digests(sha256: str | None, md5: str | None, where: str) -> dict[str, str]:
    """Validates and normalises the expected digests; returns {algorithm: lowercase hex}."""
    expected = {}
    for algorithm, value in (("sha256", sha256), ("md5", md5)):
        if value is None:
            continue
        normalised = value.strip().lower()
        if not _HEX[algorithm].fullmatch(normalised):
            length = 64 if algorithm == "sha256" else 32
            raise ValueError(
                f"{where}: {algorithm}={value!r} is not a {algorithm} digest; "
                f"expected {length} hexadecimal digits"
            )
        expected[algorithm] = normalised
    return expected


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Returns the hex digest of a file.

    Args:
        path: the file.
        algorithm: any name :func:`hashlib.new` accepts, e.g. ``"sha256"`` or ``"md5"``.

    Returns:
        The lowercase hexadecimal digest.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatches(path: pathlib.Path, expected: dict[str, str]) -> list[str]:
    """Returns one line per digest of ``path`` that differs from ``expected`` (empty if none)."""
    lines = []
    for algorithm, want in expected.items():
        got = file_digest(path, algorithm)
        if got != want:
            lines.append(f"{algorithm} expected {want}, got {got}")
    return lines


def verify(
    path: str | os.PathLike, sha256: str | None = None, md5: str | None = None
) -> pathlib.Path:
    """Checks a file against its expected sha256 and/or md5 digest.

    Args:
        path: the file to check.
        sha256: expected sha256 hex digest, or None to skip.
        md5: expected md5 hex digest, or None to skip.

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        ChecksumError: if the file does not exist or a digest differs; the message names the
            file and gives the expected and actual digests.
        ValueError: if a digest is not a hexadecimal string of the right length.
    """
    path = pathlib.Path(path)
    expected = _expected_digests(sha256, md5, "verify")
    if not path.is_file():
        raise ChecksumError(f"verify: {path} does not exist or is not a file")
    mismatches = _mismatches(path, expected)
    if mismatches:
        raise ChecksumError(
            f"checksum mismatch for {path}: {'; '.join(mismatches)}. The file is corrupt, "
            "truncated or a different version; delete it and download it again"
        )
    return path


def _destination(root: pathlib.Path, filename: str) -> pathlib.Path:
    relative = pathlib.PurePosixPath(filename)
    if not filename or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(
            f"fetch: filename={filename!r} must be a relative path inside the cache directory, "
            "e.g. 'ptb/ptb.train.txt'"
        )
    return root.joinpath(*relative.parts)


class _Mismatch(ValueError):
    """The downloaded bytes have the wrong digest (raised inside pooch's download)."""


def _copy_local(url: str, output_file: str, pooch_obj: Any) -> None:
    """pooch downloader for ``file://`` URLs (a local mirror): copies the file."""
    del pooch_obj
    parsed = urllib.parse.urlparse(url)
    shutil.copyfile(urllib.request.url2pathname(parsed.path), output_file)


def _checked(downloader: Callable[..., None], expected: dict[str, str]) -> Callable[..., None]:
    """``downloader``, then every expected digest checked on pooch's temporary file, so that
    a mismatch raises before pooch moves the file into the cache."""

    def download(url: str, output_file: str, pooch_obj: Any) -> None:
        downloader(url, output_file, pooch_obj)
        mismatches = _mismatches(pathlib.Path(output_file), expected)
        if mismatches:
            raise _Mismatch("; ".join(mismatches))

    return download


def fetch(
    url: str,
    *,
    filename: str,
    sha256: str | None = None,
    md5: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    timeout: float = 60.0,
) -> pathlib.Path:
    """Downloads ``url`` into the cache (once) and returns the local path.

    If ``cache_dir / filename`` already exists and matches the given digests, it is returned
    without touching the network; if it exists with a wrong digest it is downloaded again. With
    no digest given, an existing file is trusted as is. A download goes to a temporary file in
    the same directory, is verified, then atomically renamed into place.

    Args:
        url: where to download from (``http(s)://`` or ``file://``).
        filename: path of the file relative to the cache directory; subdirectories are allowed,
            e.g. ``"ptb/ptb.train.txt"``.
        sha256: expected sha256 hex digest, or None.
        md5: expected md5 hex digest, or None.
        cache_dir: cache root; defaults to :func:`cache_dir` (``$JAXRNN_DATA`` or
            ``~/.cache/jaxrnn``).
        progress: show a progress bar on stderr.
        timeout: socket timeout in seconds.

    Returns:
        The path of the verified file in the cache.

    Raises:
        DownloadError: on a network or HTTP error or a checksum mismatch of the downloaded bytes;
            the message names the URL and the file (and, for a mismatch, both digests). Nothing
            is left in the cache.
        ValueError: if ``filename`` escapes the cache directory or a digest is malformed.
    """
    expected = _expected_digests(sha256, md5, "fetch")
    root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    dest = _destination(root, filename)
    if dest.is_file() and not _mismatches(dest, expected):
        return dest

    hint = (
        f"Check the network connection, or download {url} yourself and place it at {dest} "
        "(or put the dataset's files in the directory given by --data-dir)"
    )
    if urllib.parse.urlparse(url).scheme == "file":
        downloader = _copy_local
    else:
        downloader = pooch.HTTPDownloader(
            progressbar=progress, timeout=timeout, headers={"User-Agent": "jaxrnn-data/1"})
    known_hash = next((f"{alg}:{value}" for alg, value in expected.items()), None)
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch announces each download at INFO level
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # pooch streams into a temporary file beside dest and moves it into place only once
        # the digest matches; on any failure (Ctrl-C included) it deletes it.
        pooch.retrieve(url, known_hash=known_hash, fname=dest.name, path=dest.parent,
                       downloader=_checked(downloader, expected))
    except _Mismatch as e:
        raise DownloadError(
            f"checksum mismatch downloading {url} to {dest}: {e}. "
            f"The server returned different bytes than expected. {hint}"
        ) from None
    except (requests.exceptions.RequestException, OSError, ValueError) as e:
        # HTTP errors (404), refused connections, timeouts, short reads, an unwritable cache.
        raise DownloadError(f"could not download {url} to {dest}: {e}. {hint}") from e
    finally:
        logger.setLevel(level)
    return dest
