"""Errors raised by the data layer.

Every error about a file on disk or on the network is a :class:`DataError`, so a script can catch
one type and print the message, which names the file (and URL) and says what to do about it.
"""


class DataError(Exception):
    """Base class: a dataset file is missing, malformed, or could not be fetched."""


class ChecksumError(DataError):
    """A file's sha256 or md5 digest differs from the expected one."""


class DownloadError(DataError):
    """A download failed (network or HTTP error, or the downloaded bytes had the wrong hash)."""
