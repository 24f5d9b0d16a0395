"""Tests for jaxrnn.data.download: fetch against a local HTTP server, and verify."""

import functools
import hashlib
import http.server
import pathlib
import threading

import pytest

from jaxrnn.data import ChecksumError, DataError, DownloadError, cache_dir, fetch, verify

CONTENT = b"the quick brown fox\njumps over the lazy dog\n"
SHA256 = hashlib.sha256(CONTENT).hexdigest()
MD5 = hashlib.md5(CONTENT).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


class LocalServer:
    """A static file server on 127.0.0.1 in a background thread."""

    def __init__(self, root: pathlib.Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.running = True

    def stop(self):
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.running = False


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "file.txt").write_bytes(CONTENT)
    local = LocalServer(root)
    yield local
    local.stop()


def _leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_fetch_downloads_and_verifies(server, tmp_path):
    cache = tmp_path / "cache"
    path = fetch(
        server.url + "file.txt",
        filename="sub/dir/file.txt",
        sha256=SHA256,
        md5=MD5,
        cache_dir=cache,
    )
    assert path == cache / "sub" / "dir" / "file.txt"
    assert path.read_bytes() == CONTENT
    assert _leftovers(cache) == ["sub/dir/file.txt"]


def test_fetch_cache_hit_needs_no_server(server, tmp_path):
    cache = tmp_path / "cache"
    first = fetch(server.url + "file.txt", filename="file.txt", sha256=SHA256, cache_dir=cache)
    server.stop()
    second = fetch(server.url + "file.txt", filename="file.txt", sha256=SHA256, cache_dir=cache)
    assert second == first
    assert second.read_bytes() == CONTENT


def test_fetch_redownloads_a_corrupt_cached_file(server, tmp_path):
    cache = tmp_path / "cache"
    (cache).mkdir()
    (cache / "file.txt").write_bytes(b"truncated")
    path = fetch(server.url + "file.txt", filename="file.txt", md5=MD5, cache_dir=cache)
    assert path.read_bytes() == CONTENT


def test_fetch_checksum_mismatch_leaves_nothing(server, tmp_path):
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch(server.url + "file.txt", filename="ptb/file.txt", sha256=wrong, cache_dir=cache)
    message = str(info.value)
    assert server.url + "file.txt" in message
    assert str(cache / "ptb" / "file.txt") in message
    assert wrong in message and SHA256 in message
    assert "--data-dir" in message
    assert _leftovers(cache) == []


def test_fetch_http_404(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="404") as info:
        fetch(server.url + "missing.txt", filename="missing.txt", cache_dir=cache)
    assert server.url + "missing.txt" in str(info.value)
    assert isinstance(info.value, DataError)
    assert _leftovers(cache) == []


def test_fetch_connection_refused(server, tmp_path):
    server.stop()
    with pytest.raises(DownloadError, match="could not download"):
        fetch(server.url + "file.txt", filename="file.txt", cache_dir=tmp_path / "cache", timeout=5)
    assert _leftovers(tmp_path / "cache") == []


def test_fetch_respects_jaxrnn_data(server, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXRNN_DATA", str(tmp_path / "env_cache"))
    assert cache_dir() == tmp_path / "env_cache"
    path = fetch(server.url + "file.txt", filename="file.txt", sha256=SHA256)
    assert path == tmp_path / "env_cache" / "file.txt"


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv("JAXRNN_DATA", raising=False)
    assert cache_dir() == pathlib.Path.home() / ".cache" / "jaxrnn"


@pytest.mark.parametrize("filename", ["", "/etc/passwd", "../escape.txt", "a/../../b"])
def test_fetch_rejects_filenames_outside_the_cache(tmp_path, filename):
    with pytest.raises(ValueError, match="relative path inside the cache"):
        fetch("http://127.0.0.1:1/x", filename=filename, cache_dir=tmp_path)


def test_fetch_rejects_malformed_digest(tmp_path):
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        fetch("http://127.0.0.1:1/x", filename="x", sha256="abc", cache_dir=tmp_path)


def test_verify(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT)
    assert verify(path, sha256=SHA256, md5=MD5.upper()) == path
    with pytest.raises(ChecksumError) as info:
        verify(path, md5="f" * 32)
    assert str(path) in str(info.value) and MD5 in str(info.value) and "f" * 32 in str(info.value)
    with pytest.raises(ChecksumError, match="does not exist"):
        verify(tmp_path / "absent.bin", sha256=SHA256)


class _ShortHandler(http.server.BaseHTTPRequestHandler):
    """Promises 1000 bytes, sends 10, closes: a connection lost mid-download."""

    def do_GET(self):  # noqa: N802 - name fixed by the base class
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002
        pass


def test_fetch_short_read_leaves_nothing(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ShortHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/file.txt"
        with pytest.raises(DownloadError, match="could not download .*file.txt"):
            fetch(url, filename="file.txt", cache_dir=tmp_path / "cache", timeout=5)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert _leftovers(tmp_path / "cache") == []


def test_fetch_interrupted_mid_download_leaves_nothing(server, tmp_path, monkeypatch):
    import pooch

    def interrupted(self, url, output_file, pooch_obj, check_only=False):
        pathlib.Path(output_file).write_bytes(CONTENT[:5])  # half written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch(server.url + "file.txt", filename="a/file.txt", sha256=SHA256,
              cache_dir=tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


def test_fetch_file_urls_copy_through_the_same_checks(tmp_path):
    source = tmp_path / "mirror" / "file.txt"
    source.parent.mkdir()
    source.write_bytes(CONTENT)
    path = fetch(source.as_uri(), filename="f/file.txt", sha256=SHA256, md5=MD5,
                 cache_dir=tmp_path / "cache")
    assert path.read_bytes() == CONTENT
    with pytest.raises(DownloadError, match=r"checksum mismatch .*md5 expected f{32}"):
        fetch(source.as_uri(), filename="g/file.txt", sha256=SHA256, md5="f" * 32,
              cache_dir=tmp_path / "cache")
    with pytest.raises(DownloadError, match="could not download .*absent.txt"):
        fetch((tmp_path / "absent.txt").as_uri(), filename="h.txt", cache_dir=tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == ["f/file.txt"]
