"""Read untrusted .tar / .tar.gz / .tgz / .zip archives in memory, safely.

Nothing is ever extracted to disk: members are read into ``bytes``. Every
member is still checked, so that a hostile archive is refused as a whole with
an error naming the offending member (a path with ``..`` or an absolute path,
a link, a device or fifo), and the number of members and their total
uncompressed size are capped, to bound memory and time (zip/tar bombs).
"""

import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ._errors import LimitExceededError, UnsafeArchiveError, corrupt_file

DEFAULT_MAX_MEMBERS = 1_000_000
DEFAULT_MAX_TOTAL_BYTES = 4 * 2**30

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(path):
    """True if ``path`` has one of the archive suffixes read by this module."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def iter_archive_files(path, *, wanted=None, max_members=DEFAULT_MAX_MEMBERS,
                       max_total_bytes=DEFAULT_MAX_TOTAL_BYTES):
    """Yield ``(name, data)`` for the regular files of an archive, in archive order.

    The archive is read once, sequentially, so a compressed tar is decompressed
    only once.

    Parameters
    ----------
    path : path-like
        A ``.zip`` file, or a tar file (possibly gzip, bz2 or xz compressed).
    wanted : callable, default=None
        ``wanted(name) -> bool``; the data of other members is skipped (they
        are still checked). None reads every regular file.
    max_members : int
        Refuse archives with more members (files, folders, ...) than this.
    max_total_bytes : int
        Refuse archives whose regular files add up to more bytes than this.

    Yields
    ------
    name : str
        The member's name, with ``/`` separators.
    data : bytes

    Raises
    ------
    UnsafeArchiveError
        On a dangerous member.
    LimitExceededError
        When a cap is exceeded.
    CorruptFileError
        When the archive cannot be read.
    """
    path = Path(path)
    limits = Limits(path, max_members, max_total_bytes)
    wanted = wanted or (lambda name: True)
    if path.suffix.lower() == ".zip":
        yield from _iter_zip(path, wanted, limits)
    else:
        yield from _iter_tar(path, wanted, limits)


class Limits:
    """Count the files of a folder or archive and their bytes; raise naming the parameter to raise."""

    def __init__(self, path, max_members, max_total_bytes):
        self.path = path
        self.max_members = max_members
        self.max_total_bytes = max_total_bytes
        self.members = 0
        self.total_bytes = 0

    def add(self, size):
        self.members += 1
        self.total_bytes += size
        if self.members > self.max_members:
            raise LimitExceededError(
                f"{self.path} has more than max_members={self.max_members} members; "
                "pass a larger max_members if you trust it."
            )
        if self.total_bytes > self.max_total_bytes:
            raise LimitExceededError(
                f"{self.path} holds more than max_total_bytes={self.max_total_bytes} "
                "bytes uncompressed; pass a larger max_total_bytes if you trust it."
            )


def check_member_name(name, archive):
    """Refuse absolute names and names with a ``..`` component.

    Backslashes count as separators too: the archive may come from Windows.
    """
    parts = PurePosixPath(name.replace("\\", "/")).parts
    absolute = name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":")
    if absolute or ".." in parts:
        raise UnsafeArchiveError(
            f"{archive} holds the member {name!r}, whose path leaves the archive "
            "folder; refusing to read it."
        )


def _iter_tar(path, wanted, limits):
    # Open the file outside the try: a missing or unreadable file is not corrupt.
    with open(path, "rb") as fileobj:
        yield from _iter_tar_fileobj(fileobj, path, wanted, limits)


def _iter_tar_fileobj(fileobj, path, wanted, limits):
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as archive:
            for member in archive:
                _check_tar_member(member, path)
                limits.add(member.size if member.isreg() else 0)
                if member.isreg() and wanted(member.name):
                    yield member.name, archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        # OSError covers gzip.BadGzipFile; EOFError a truncated gzip stream.
        raise corrupt_file(path, repr(exc)) from exc


def _check_tar_member(member, path):
    check_member_name(member.name, path)
    if not (member.isreg() or member.isdir()):
        kinds = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
                 tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                 tarfile.FIFOTYPE: "a fifo"}
        kind = kinds.get(member.type, f"of tar type {member.type!r}")
        raise UnsafeArchiveError(
            f"{path} holds the member {member.name!r}, which is {kind}; "
            "only regular files and folders are accepted."
        )


def _iter_zip(path, wanted, limits):
    with open(path, "rb") as fileobj:
        yield from _iter_zip_fileobj(fileobj, path, wanted, limits)


def _iter_zip_fileobj(fileobj, path, wanted, limits):
    try:
        with zipfile.ZipFile(fileobj) as archive:
            infos = archive.infolist()
            # The central directory lists everything up front: check it all
            # before reading any data.
            for info in infos:
                _check_zip_member(info, path)
                limits.add(info.file_size)
            for info in infos:
                if not info.is_dir() and wanted(info.filename):
                    # ZipExtFile stops at the declared file_size and checks the CRC.
                    yield info.filename, archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise corrupt_file(path, repr(exc)) from exc


def _check_zip_member(info, path):
    check_member_name(info.filename, path)
    # Unix mode bits sit in the high 16 bits of external_attr; many writers
    # (zipfile.writestr, Windows tools) leave the file-type bits at zero.
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchiveError(
            f"{path} holds the member {info.filename!r}, which is not a regular "
            "file or folder (a link or special file); refusing to read it."
        )
