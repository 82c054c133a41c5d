"""Download tests against a local HTTP server on 127.0.0.1 (no internet)."""

import dataclasses
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import time
import types

import numpy as np
import pytest

import skconvfeat.datasets as ds
from skconvfeat.datasets import _download as download_module
from skconvfeat.datasets import _fetchers
from skconvfeat.datasets._download import RemoteFile, fetch_file
from skconvfeat.datasets._errors import ChecksumMismatchError, DownloadError

BODY = bytes(range(256)) * 40


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serve ``server.plan[path]``: a list of responses used one per request.

    A response is ("ok", body), ("truncated", body): Content-Length of the
    whole body but only half of it sent, ("no_length", body): no Content-Length,
    the body ends when the connection closes, ("drip", body): one byte every
    0.1 s, or (status, None).
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.requests.append(self.path)
        plan = self.server.plan.get(self.path) or [(404, None)]
        kind, body = plan.pop(0) if len(plan) > 1 else plan[0]
        if isinstance(kind, int):
            self.send_error(kind)
            return
        self.send_response(200)
        if kind != "no_length":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.close_connection = True
        try:
            if kind == "drip":
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self.wfile.write(body[: len(body) // 2] if kind == "truncated" else body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.plan, httpd.requests = {}, []
    httpd.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/files/"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def remote(algorithm="sha256", body=BODY):
    checksum = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
    return RemoteFile("data.bin", checksum, len(body))


def fetch(server, folder, **kwargs):
    kwargs = {"n_retries": 2, "delay": 0, "timeout": 10, **kwargs}
    return fetch_file(kwargs.pop("remote", remote()), folder, server.base_url, **kwargs)


def assert_nothing_left(folder):
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_download_success(algorithm, server, tmp_path, capsys):
    server.plan["/files/data.bin"] = [("ok", BODY)]
    path = fetch(server, tmp_path / "cache", remote=remote(algorithm))
    assert path == tmp_path / "cache" / "data.bin" and path.read_bytes() == BODY
    assert list(path.parent.iterdir()) == [path]  # no temporary file left
    assert "Downloading" in capsys.readouterr().err
    # Second call: taken from the cache, no request.
    assert fetch(server, tmp_path / "cache") == path and len(server.requests) == 1


def test_checksum_mismatch(server, tmp_path):
    server.plan["/files/data.bin"] = [("ok", BODY[:-1] + b"X")]
    with pytest.raises(ChecksumMismatchError, match="data.bin.*expected"):
        fetch(server, tmp_path)
    assert_nothing_left(tmp_path)
    assert len(server.requests) == 1  # a complete, wrong file is not retried


def test_truncated_transfer_is_retried_then_fails(server, tmp_path):
    server.plan["/files/data.bin"] = [("truncated", BODY)]
    with pytest.raises(DownloadError, match="data.bin.*gave up after 3 attempts"):
        fetch(server, tmp_path)
    assert_nothing_left(tmp_path)
    assert len(server.requests) == 3


def test_interrupted_then_retried_successfully(server, tmp_path):
    server.plan["/files/data.bin"] = [("truncated", BODY), ("ok", BODY)]
    path = fetch(server, tmp_path)
    assert path.read_bytes() == BODY and list(tmp_path.iterdir()) == [path]
    assert len(server.requests) == 2


@pytest.mark.parametrize("status, attempts", [(404, 1), (500, 3)])
def test_http_error(status, attempts, server, tmp_path):
    server.plan["/files/data.bin"] = [(status, None)]
    with pytest.raises(DownloadError) as excinfo:
        fetch(server, tmp_path)
    assert f"HTTP error {status}" in str(excinfo.value)
    assert server.base_url + "data.bin" in str(excinfo.value)
    assert_nothing_left(tmp_path)
    assert len(server.requests) == attempts  # only server errors are retried


def test_connection_refused(tmp_path):
    # Port 9 ("discard") on localhost: nothing listens there.
    with pytest.raises(DownloadError, match="127.0.0.1:9"):
        fetch_file(remote(), tmp_path, "http://127.0.0.1:9/", n_retries=0, timeout=5)
    assert_nothing_left(tmp_path)


def test_fetch_mnist_downloads_into_data_home(server, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1], dtype=np.uint8)
    files = {
        "t10k-images-idx3-ubyte.gz": bytes([0, 0, 8, 3]) + struct.pack(">3I", 4, 28, 28)
        + images.tobytes(),
        "t10k-labels-idx1-ubyte.gz": bytes([0, 0, 8, 1]) + struct.pack(">I", 4)
        + labels.tobytes(),
    }
    files = {name: gzip.compress(raw) for name, raw in files.items()}
    for name, body in files.items():
        server.plan[f"/files/{name}"] = [("ok", body)]
    test_files = tuple(RemoteFile(name, f"sha256:{hashlib.sha256(body).hexdigest()}", len(body))
                       for name, body in files.items())
    mnist = dataclasses.replace(_fetchers.DATASETS["mnist"],
                                files={"train": (), "test": test_files})
    monkeypatch.setitem(_fetchers.DATASETS, "mnist", mnist)
    monkeypatch.setitem(_fetchers.BASE_URLS, "mnist", server.base_url)

    bunch = ds.fetch_mnist(data_home=tmp_path, subset="test")
    np.testing.assert_array_equal(bunch.images, images)
    np.testing.assert_array_equal(bunch.target, labels)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(files)


# --- bounds, permissions, leftovers ----------------------------------------------------


def test_every_dataset_file_has_its_expected_size():
    for dataset in _fetchers.DATASETS.values():
        for files in dataset.files.values():
            for file in files:
                assert isinstance(file.size, int) and file.size > 1000, file


def test_body_without_content_length_is_cut_at_the_expected_size(server, tmp_path):
    server.plan["/files/data.bin"] = [("no_length", BODY * 50)]
    with pytest.raises(DownloadError) as excinfo:
        fetch(server, tmp_path / "cache")
    message = str(excinfo.value)
    assert "data.bin" in message and f"{len(BODY)} bytes" in message
    assert len(server.requests) == 1  # a server sending too much is not retried
    assert not (tmp_path / "cache").exists()


def test_announced_length_beyond_the_expected_size_is_refused(server, tmp_path):
    server.plan["/files/data.bin"] = [("ok", BODY + b"x")]
    with pytest.raises(DownloadError, match=f"data.bin.*{len(BODY) + 1}.*{len(BODY)}"):
        fetch(server, tmp_path)
    assert_nothing_left(tmp_path)


def test_body_without_content_length_of_the_right_size_is_accepted(server, tmp_path):
    server.plan["/files/data.bin"] = [("no_length", BODY)]
    assert fetch(server, tmp_path).read_bytes() == BODY


def test_slow_drip_stops_at_the_deadline(server, tmp_path):
    server.plan["/files/data.bin"] = [("drip", BODY)]
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"data.bin.*deadline=0.5 s"):
        fetch(server, tmp_path / "cache", deadline=0.5)
    assert time.monotonic() - start < 5
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("deadline", [0, -1, float("nan"), "1"])
def test_deadline_is_validated(deadline, tmp_path):
    with pytest.raises((ValueError, TypeError), match="'deadline' parameter of fetch_mnist"):
        ds.fetch_mnist(data_home=tmp_path, deadline=deadline)
    assert list(tmp_path.iterdir()) == []


def test_downloaded_file_respects_the_umask(server, tmp_path, umask_022):
    server.plan["/files/data.bin"] = [("ok", BODY)]
    path = fetch(server, tmp_path / "cache")
    assert path.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o755


def test_failed_download_leaves_no_folder(server, tmp_path):
    server.plan["/files/data.bin"] = [(404, None)]
    with pytest.raises(DownloadError):
        fetch(server, tmp_path / "home" / "mnist")
    assert list(tmp_path.iterdir()) == []


def test_failed_download_keeps_folders_that_existed(server, tmp_path):
    (tmp_path / "mnist").mkdir()
    server.plan["/files/data.bin"] = [(404, None)]
    with pytest.raises(DownloadError):
        fetch(server, tmp_path / "mnist")
    assert list(tmp_path.iterdir()) == [tmp_path / "mnist"]


def test_stale_partial_files_are_cleaned(server, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    stale = tmp_path / ".data.bin.k1lled.part"
    stale.write_bytes(b"left by a killed run")
    other = tmp_path / ".other.bin.x.part"  # another file's: not ours to judge
    other.write_bytes(b"")
    live = tmp_path / ".data.bin.l1ve.part"  # a download in progress holds its lock
    with open(live, "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        server.plan["/files/data.bin"] = [("ok", BODY)]
        path = fetch(server, tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [path.name, live.name, other.name])


# --- raw responses: trickles and malformed headers --------------------------------------


TRICKLE_FOR_S = 8  # the raw server gives up after this: a test on a hanging client still ends


@pytest.fixture
def raw_server():
    """A server on 127.0.0.1 answering every connection with ``raw_server.response``.

    ``response`` is (head, trickled): ``head`` bytes are sent at once, then the
    ``trickled`` bytes one every 0.05 s, until TRICKLE_FOR_S seconds have passed.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    server = types.SimpleNamespace(
        response=(b"", b""), connections=0,
        base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/files/")

    def answer(connection):
        head, trickled = server.response
        end = time.monotonic() + TRICKLE_FOR_S
        with connection:
            try:
                connection.recv(65536)  # the request
                connection.sendall(head)
                for byte in trickled:
                    if stop.is_set() or time.monotonic() > end:
                        return
                    connection.sendall(bytes([byte]))
                    time.sleep(0.05)
            except OSError:  # the client gave up, as it should
                pass

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            server.connections += 1
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(timeout=10)
    listener.close()


ENDLESS = b"a" * 10**6


@pytest.mark.parametrize("where, response", [
    ("status line", (b"", b"HTTP/1.1 200 OK" + ENDLESS)),
    ("header", (b"HTTP/1.1 200 OK\r\nX-Slow: ", ENDLESS)),
    ("headers", (b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n" * 10**5)),
])
def test_trickled_status_line_or_headers_stop_at_the_deadline(where, response, raw_server,
                                                              tmp_path):
    raw_server.response = response
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"data.bin.*deadline=1 s"):
        fetch(raw_server, tmp_path / "cache", deadline=1, timeout=10)
    assert time.monotonic() - start < 3, f"a trickled {where} held the call"
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("length", ["\u00b2", "-1", "1e3", "12, 12", "0x10"])
def test_malformed_content_length_is_a_download_error(length, raw_server, tmp_path):
    raw_server.response = (f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode("latin-1")
                           + BODY, b"")
    with pytest.raises(DownloadError, match="data.bin.*announces"):
        fetch(raw_server, tmp_path / "cache")
    assert raw_server.connections == 1  # not retried: the server would say it again
    assert not (tmp_path / "cache").exists()


def test_folder_removed_between_attempts_is_made_again(server, tmp_path, monkeypatch):
    # Two processes download into one new folder; the one that fails removes the
    # (empty) folder while the other waits to retry: the retry must not die on it.
    folder = tmp_path / "home" / "cifar10"
    server.plan["/files/data.bin"] = [("truncated", BODY), ("ok", BODY)]
    real_sleep = time.sleep

    def other_process_cleans_up(seconds):
        folder.rmdir()
        real_sleep(seconds)

    monkeypatch.setattr(download_module.time, "sleep", other_process_cleans_up)
    path = fetch(server, folder)
    assert path.read_bytes() == BODY and list(folder.iterdir()) == [path]


def test_unwritable_folder_is_a_download_error(server, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(download_module.tempfile, "mkstemp", refuse)
    with pytest.raises(DownloadError, match="Cannot write the download of data.bin into .*writable data_home"):
        fetch(server, tmp_path / "home")
    assert not (tmp_path / "home").exists()  # the folder made for it is gone again
