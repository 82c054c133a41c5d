"""Download dataset files into the cache, verified, atomically.

Policy (documented in ``docs/datasets.md``):

* A file already in the cache is used as is, without re-hashing it: the shared
  read-only copies may be re-compressed (same content, other bytes), and a
  damaged file is reported by the parser with a "delete it" message instead.
* A download goes to a temporary file in the destination folder, is hashed
  while it streams, and is ``os.replace``-d into place only when complete and
  verified. The temporary file is removed in a ``finally`` block, so a failed
  download never leaves anything behind.
* Transient failures (connection errors, time-outs, truncated transfers, HTTP
  5xx and 429) are retried ``n_retries`` times, ``delay`` seconds apart.
  A checksum mismatch of a *complete* file and other HTTP errors (404, 403,
  ...) are not retried: the server would send the same bytes again.
"""

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ._errors import ChecksumMismatchError, DownloadError

_CHUNK_SIZE = 1 << 20
_PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset: its name and published checksum ``"<algo>:<hex>"``."""

    filename: str
    checksum: str

    @property
    def algorithm(self):
        return self.checksum.split(":", 1)[0]

    @property
    def hexdigest(self):
        return self.checksum.split(":", 1)[1]


class _TransientError(DownloadError):
    """A failure worth retrying (network hiccup, truncated transfer, 5xx)."""


def fetch_file(remote, folder, base_url, *, download_if_missing=True, n_retries=3,
               delay=1.0, timeout=60.0):
    """Return the path of ``remote`` in ``folder``, downloading it if needed.

    Parameters
    ----------
    remote : RemoteFile
        The file name and its expected checksum.
    folder : path-like
        The dataset's folder, ``<data_home>/<dataset>``.
    base_url : str
        URL of the folder holding the file on the server (ends with ``/``).
    download_if_missing : bool, default=True
        If False and the file is missing, raise FileNotFoundError.
    n_retries : int, default=3
        Number of retries after a transient failure.
    delay : float, default=1.0
        Seconds between retries.
    timeout : float, default=60.0
        Socket time-out in seconds.

    Returns
    -------
    path : pathlib.Path
    """
    folder = Path(folder)
    path = folder / remote.filename
    if path.is_file():
        return path
    if not download_if_missing:
        raise FileNotFoundError(
            f"{remote.filename} not found in {folder} (data_home={str(folder.parent)!r}) "
            "and download_if_missing=False."
        )
    url = base_url + remote.filename
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(n_retries + 1):
        try:
            _download_verified(url, path, remote, timeout)
            return path
        except _TransientError as exc:
            if attempt == n_retries:
                raise DownloadError(f"{exc} (gave up after {attempt + 1} attempts)") from exc
            print(f"{exc}; retrying in {delay:g} s", file=sys.stderr)
            time.sleep(delay)


def _download_verified(url, path, remote, timeout):
    """Download ``url`` to ``path`` via a temporary file; never leave a partial file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            digest = _stream(url, tmp, remote.algorithm, timeout)
        if digest != remote.hexdigest:
            raise ChecksumMismatchError(
                f"{url} does not have the published {remote.algorithm} checksum "
                f"(expected {remote.hexdigest}, got {digest}); the file was discarded."
            )
        os.replace(tmp_name, path)
    finally:
        # After os.replace the temporary name no longer exists: nothing to do.
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def _stream(url, out, algorithm, timeout):
    """Copy the body of ``url`` to ``out``; return its hex digest."""
    digest = hashlib.new(algorithm)
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            progress = _Progress(url, expected)
            while chunk := response.read(_CHUNK_SIZE):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                progress.update(received)
            progress.close(received)
    except urllib.error.HTTPError as exc:
        error = _TransientError if exc.code >= 500 or exc.code == 429 else DownloadError
        raise error(f"HTTP error {exc.code} ({exc.reason}) for {url}") from exc
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
            TimeoutError) as exc:
        raise _TransientError(f"Download of {url} failed: {exc!r}") from exc
    # http.client does not complain when the server closes the connection
    # before Content-Length bytes: check it here.
    if expected is not None and received != expected:
        raise _TransientError(
            f"Download of {url} truncated: got {received} of {expected} bytes"
        )
    return digest.hexdigest()


class _Progress:
    """A one-line download progress report on stderr, refreshed twice a second."""

    def __init__(self, url, total):
        self.url = url
        self.total = total
        self.last = 0.0

    def update(self, received):
        now = time.monotonic()
        if now - self.last >= _PROGRESS_EVERY_S:
            self.last = now
            self._print(received, end="\r")

    def close(self, received):
        self._print(received, end="\n")

    def _print(self, received, end):
        done = f"{received / 1e6:.1f} MB"
        if self.total:
            done += f" / {self.total / 1e6:.1f} MB ({100 * received / self.total:.0f}%)"
        print(f"Downloading {self.url}: {done}", end=end, file=sys.stderr, flush=True)
