"""One download helper for every dataset: a checksummed, atomic, cached ``fetch``.

A file is downloaded to a temporary file in the destination directory, its digest is checked, and
only then is it moved into place with :func:`os.replace`, so the cache never holds a half-written or
corrupt file: after a failure (network error, HTTP error, checksum mismatch, Ctrl-C) nothing is
left behind.

The cache directory is ``$JAXRNN_DATA`` if set, else ``~/.cache/jaxrnn``.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import sys
import tempfile
import urllib.error
import urllib.request

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


class _Progress:
    """Minimal progress display on stderr (tqdm if it is installed)."""

    def __init__(self, enabled: bool, total: int | None, name: str):
        self._bar = None
        self._enabled = enabled
        self._done = 0
        self._total = total
        self._name = name
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False)

    def update(self, count: int) -> None:
        self._done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self._enabled:
            total = f"/{self._total}" if self._total else ""
            print(f"\r{self._name}: {self._done}{total} bytes", end="", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            print(file=sys.stderr)


def _download(url: str, out, *, timeout: float, progress: bool, name: str) -> None:
    """Streams ``url`` into the open binary file ``out``."""
    request = urllib.request.Request(url, headers={"User-Agent": "jaxrnn-data/1"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        bar = _Progress(progress, int(length) if length and length.isdigit() else None, name)
        try:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
        finally:
            bar.close()
        if length and length.isdigit() and out.tell() != int(length):
            raise OSError(f"connection closed after {out.tell()} of {length} bytes")


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
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise DownloadError(f"cannot download {url}: cannot write to {dest.parent}: {e}") from e
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url, out, timeout=timeout, progress=progress, name=dest.name)
        mismatches = _mismatches(tmp, expected)
        if mismatches:
            raise DownloadError(
                f"checksum mismatch downloading {url} to {dest}: {'; '.join(mismatches)}. "
                f"The server returned different bytes than expected. {hint}"
            )
        os.replace(tmp, dest)
    except DownloadError:
        tmp.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        # HTTPError and socket timeouts are URLError/OSError subclasses; ValueError: bad URL.
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"could not download {url} to {dest}: {e}. {hint}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
