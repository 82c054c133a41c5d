"""Download dataset files into the cache, verified, atomically, within bounds.

Policy (documented in ``docs/datasets.md``):

* A file already in the cache is used as is, without re-hashing it: the shared
  read-only copies may be re-compressed (same content, other bytes), and a
  damaged file is reported by the parser with a "delete it" message instead.
* A download goes to a temporary file in the destination folder, is hashed
  while it streams, and is ``os.replace``-d into place only when complete and
  verified. The temporary file is removed in a ``finally`` block, and folders
  created for the download are removed again if it fails, so a failed download
  never leaves anything behind. Temporary files of killed runs (not locked by a
  live download) are removed before a new download of the same file.
* Every file has a known size: a server announcing or sending more is cut off
  (not retried), and the whole fetch, retries included, has a ``deadline``
  that covers the whole exchange: connecting, the status line, the headers and
  the body (a watchdog shuts the socket down when it passes, since socket
  time-outs bound each wait, not a server trickling one byte per time-out).
  A malformed ``Content-Length`` is a DownloadError, not retried.
* Files and folders get the permissions of the process's umask (``0o644`` and
  ``0o755`` with the usual ``022``), so a shared data folder stays readable.
* Transient failures (connection errors, time-outs, truncated transfers, HTTP
  5xx and 429) are retried ``n_retries`` times, ``delay`` seconds apart.
  A checksum mismatch of a *complete* file and other HTTP errors (404, 403,
  ...) are not retried: the server would send the same bytes again.
"""

import functools
import hashlib
import http.client
import os
import re
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ._errors import ChecksumMismatchError, DownloadError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, stale partial files are left alone
    fcntl = None

_CHUNK_SIZE = 1 << 20
_PROGRESS_EVERY_S = 0.5
DEFAULT_DEADLINE = 3600.0


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset: its name, published checksum ``"<algo>:<hex>"`` and size in bytes."""

    filename: str
    checksum: str
    size: int

    @property
    def algorithm(self):
        return self.checksum.split(":", 1)[0]

    @property
    def hexdigest(self):
        return self.checksum.split(":", 1)[1]


class _TransientError(DownloadError):
    """A failure worth retrying (network hiccup, truncated transfer, 5xx)."""


def fetch_file(remote, folder, base_url, *, download_if_missing=True, n_retries=3,
               delay=1.0, timeout=60.0, deadline=DEFAULT_DEADLINE):
    """Return the path of ``remote`` in ``folder``, downloading it if needed.

    Parameters
    ----------
    remote : RemoteFile
        The file name, its expected checksum and size.
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
    deadline : float, default=3600.0
        Seconds for the whole download, retries included: connecting, the
        status line, the headers and the body all stop when it passes.

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
    clock = _Deadline(url, deadline)
    created = _make_folders(folder)
    try:
        _remove_stale_partials(path)
        _download_with_retries(url, path, remote, n_retries, delay, timeout, clock)
    except BaseException:
        _remove_empty_folders(created)
        raise
    return path


def _download_with_retries(url, path, remote, n_retries, delay, timeout, clock):
    for attempt in range(n_retries + 1):
        try:
            _download_verified(url, path, remote, timeout, clock)
            return
        except _TransientError as exc:
            if attempt == n_retries:
                raise DownloadError(f"{exc} (gave up after {attempt + 1} attempts)") from exc
            clock.check(delay)
            print(f"{exc}; retrying in {delay:g} s", file=sys.stderr)
            time.sleep(delay)


class _Deadline:
    """The end of the time allowed to one fetch, and the error that says so."""

    def __init__(self, url, seconds):
        self.url = url
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self):
        return self.end - time.monotonic()

    def check(self, more=0.0):
        """Raise if the deadline has passed, or would have after ``more`` seconds."""
        if self.remaining() < more:
            raise DownloadError(
                f"Download of {self.url} did not finish within deadline={self.seconds:g} s; "
                "pass a larger deadline if the server is just slow."
            )


def _make_folders(folder):
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    for parent in reversed(missing):
        # mode 0o777 masked by the umask, as mkdir(1) does.
        parent.mkdir(exist_ok=True)
    return missing[::-1]


def _remove_empty_folders(created):
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:  # not empty: another download put something there
            return


def _partial_name_parts(path):
    """Prefix and suffix of the temporary files of a download of ``path``."""
    return f".{path.name}.", ".part"


def _remove_stale_partials(path):
    """Remove temporary files of ``path`` left by killed runs.

    A live download holds an exclusive lock on its temporary file; a file whose
    lock can be taken belongs to a process that no longer runs.
    """
    if fcntl is None:
        return
    prefix, suffix = _partial_name_parts(path)
    for partial in path.parent.glob(f"{prefix}*{suffix}"):
        try:
            with open(partial, "rb") as file:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                partial.unlink()
        except OSError:  # locked (BlockingIOError) or already gone
            continue


def _current_umask():
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _download_verified(url, path, remote, timeout, clock):
    """Download ``url`` to ``path`` via a temporary file; never leave a partial file."""
    prefix, suffix = _partial_name_parts(path)
    try:
        # Again at each attempt: a concurrent download of the same new folder that
        # failed may have removed it (empty) between two of ours.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    except OSError as exc:
        raise DownloadError(f"Cannot write the download of {remote.filename} into "
                            f"{path.parent}: {exc.strerror or exc}; pass a writable data_home.") from exc
    try:
        # mkstemp makes the file 0o600; a cached dataset should be as readable
        # as any other file the user creates.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as tmp:
            if fcntl is not None:
                fcntl.flock(tmp, fcntl.LOCK_EX)  # tells _remove_stale_partials we live
            digest = _stream(url, tmp, remote, timeout, clock)
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


def _stream(url, out, remote, timeout, clock):
    """Copy the body of ``url`` to ``out``, at most ``remote.size`` bytes; return its digest."""
    digest = hashlib.new(remote.algorithm)
    received = 0
    clock.check()
    # Every socket operation ends by the deadline or the time-out, whichever is first
    # (a time-out of 0 would make the socket non-blocking: keep it positive).
    socket_timeout = max(min(timeout, clock.remaining()), 1e-3)
    try:
        with _Watchdog(clock) as watchdog, \
                watchdog.opener().open(url, timeout=socket_timeout) as response:
            expected = _announced_length(response, url, remote)
            progress = _Progress(url, expected or remote.size)
            # read1 returns what has arrived, so that a slow drip still lets
            # the deadline be checked; one byte beyond the size is enough to refuse.
            while chunk := response.read1(min(_CHUNK_SIZE, remote.size + 1 - received)):
                received += len(chunk)
                if received > remote.size:
                    raise DownloadError(
                        f"{url} sends more than the {remote.size} bytes expected of "
                        f"{remote.filename}; refusing it (the file was discarded)."
                    )
                digest.update(chunk)
                out.write(chunk)
                progress.update(received)
                clock.check()
            # An end of data after the deadline is the watchdog's doing, not the server's.
            clock.check()
            progress.close(received)
    except urllib.error.HTTPError as exc:
        error = _TransientError if exc.code >= 500 or exc.code == 429 else DownloadError
        raise error(f"HTTP error {exc.code} ({exc.reason}) for {url}") from exc
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        clock.check()  # the watchdog's shutdown at the deadline reads as a network error
        raise _TransientError(f"Download of {url} failed: {exc!r}") from exc
    # http.client does not complain when the server closes the connection
    # before Content-Length bytes: check it here.
    if expected is not None and received != expected:
        clock.check()
        raise _TransientError(
            f"Download of {url} truncated: got {received} of {expected} bytes"
        )
    return digest.hexdigest()


def _announced_length(response, url, remote):
    """The Content-Length, if any; refuse a malformed one, or one beyond the file's known size."""
    length = response.headers.get("Content-Length")
    if length is None:
        return None
    # ASCII digits only: str.isdigit() accepts "²", which int() refuses.
    if not re.fullmatch(r"[0-9]+", length.strip()) or int(length) > remote.size:
        raise DownloadError(
            f"{url} announces {length!r:.40} bytes, but {remote.filename} has {remote.size} "
            "bytes; refusing to download it."
        )
    return int(length)


class _Watchdog:
    """Shut down the sockets of one download attempt when the deadline passes.

    Use as a context manager around the exchange, and open URLs with
    :meth:`opener`, whose connections register their sockets here.
    """

    def __init__(self, clock):
        self.connections = []
        self.sockets = []
        self.timer = threading.Timer(max(clock.remaining(), 0.0), self._shut_down)
        self.timer.daemon = True

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc_info):
        self.timer.cancel()

    def opener(self):
        return urllib.request.build_opener(_WatchedHandler(self), _WatchedHTTPSHandler(self))

    def _shut_down(self):
        # A connection's socket before it is connected or its TLS handshake done;
        # the sockets seen once connected, which the response reads after the
        # connection lets go of them.
        for sock in [connection.sock for connection in self.connections] + self.sockets:
            if sock is not None:
                try:
                    # The plain socket method, also for an SSLSocket mid-read.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:  # already closed
                    pass


def _watched(connection_class):
    """``connection_class`` registering its sockets with the ``watchdog`` it is built with."""

    class Watched(connection_class):
        def __init__(self, *args, watchdog, **kwargs):
            super().__init__(*args, **kwargs)
            self.watchdog = watchdog
            watchdog.connections.append(self)

        def connect(self):
            super().connect()
            self.watchdog.sockets.append(self.sock)

    return Watched


_WatchedHTTPConnection = _watched(http.client.HTTPConnection)
_WatchedHTTPSConnection = _watched(http.client.HTTPSConnection)


class _WatchedHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog):
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, req):
        return self.do_open(
            functools.partial(_WatchedHTTPConnection, watchdog=self.watchdog), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog):
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, req):
        return self.do_open(
            functools.partial(_WatchedHTTPSConnection, watchdog=self.watchdog), req)


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
