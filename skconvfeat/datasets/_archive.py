"""Read untrusted .tar / .tar.gz / .tgz / .zip archives in memory, safely.

Nothing is ever extracted to disk: members are read into ``bytes``. Every
member is still checked, so that a hostile archive is refused as a whole with
an error naming the offending member (a path with ``..`` or an absolute path,
a link, a device or fifo, a name given twice), and the number of members and
their total uncompressed size are capped, to bound memory and time (zip/tar
bombs).

Tar headers are bounded too: the bytes ``tarfile`` reads to describe one
member (GNU long names, PAX extended and global headers, sparse maps) are
counted before they are read, and refused beyond :data:`MAX_HEADER_BYTES`; a
1 GiB long name in a 1 MB ``.tar.gz`` is never decompressed.
"""

import bz2
import gzip
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ._errors import LimitExceededError, UnsafeArchiveError, corrupt_file

try:
    import lzma
except ImportError:  # Python built without xz support: such archives read as corrupt
    lzma = None

DEFAULT_MAX_MEMBERS = 1_000_000
DEFAULT_MAX_TOTAL_BYTES = 4 * 2**30
#: The most bytes of headers read for one tar member (its 512-byte header and
#: any long-name, PAX or sparse headers before it). Real names stay under 4 kB.
MAX_HEADER_BYTES = 64 * 2**10
#: The most PAX global header keys kept for a tar (``git archive`` writes one).
MAX_GLOBAL_HEADERS = 64

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


def canonical_name(name):
    r"""The one spelling of a member or file name: ``/`` separators, no ``.`` parts, NFC.

    Unicode has two spellings of accented letters (NFC, composed, as Windows
    and Linux tools write them; NFD, decomposed, as macOS writes them); they
    name one file or class.

    Examples
    --------
    >>> canonical_name("./cafe\u0301\\1.png") == "caf\u00e9/1.png"
    True
    """
    return unicodedata.normalize("NFC", PurePosixPath(name.replace("\\", "/")).as_posix())


class UniqueNames:
    """Refuse a second file of the same :func:`canonical_name` in one archive or folder.

    An archive may list a name twice (``tar -r`` appends): loading both would
    count those images twice, and keeping either would silently drop the other.
    """

    def __init__(self, path):
        self.path = path
        self.seen = {}

    def add(self, name):
        key = canonical_name(name)
        if key in self.seen:
            raise UnsafeArchiveError(
                f"{self.path} holds {key!r} twice (as {self.seen[key]!r} and {name!r}); "
                "remove one of them."
            )
        self.seen[key] = name


def _iter_tar(path, wanted, limits):
    # Open the file outside the try: a missing or unreadable file is not corrupt.
    with open(path, "rb") as fileobj:
        yield from _iter_tar_fileobj(fileobj, path, wanted, limits)


_TAR_COMPRESSIONS = (
    (b"\x1f\x8b", lambda file: gzip.GzipFile(fileobj=file, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma and lzma.LZMAFile),
)
_TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error,
               *((lzma.LZMAError,) if lzma else ()))


def _decompressed(fileobj):
    """``fileobj`` as a stream of tar bytes, decompressed as it is read if compressed."""
    magic = fileobj.read(6)
    fileobj.seek(0)
    for prefix, opener in _TAR_COMPRESSIONS:
        if magic.startswith(prefix):
            if opener is None:
                raise tarfile.CompressionError("this Python has no lzma module for .xz")
            return opener(fileobj)
    return fileobj


class _HeaderBoundedReader:
    """A file for ``tarfile`` that refuses to read more than MAX_HEADER_BYTES of headers per member.

    ``tarfile`` reads a long-name or PAX header in one ``read(size)`` of the
    size the previous header declares; the check comes before that read, so a
    hostile size is never allocated. Reads by :meth:`read_member` are member
    data, bounded by the caller from ``member.size``; the caller resets
    ``header_bytes`` once a member is out.
    """

    def __init__(self, fileobj, path):
        self.fileobj = fileobj
        self.path = path
        self.header_bytes = 0
        self.reading_data = False

    def read(self, size=-1):
        if not self.reading_data:
            if size is None or size < 0 or self.header_bytes + size > MAX_HEADER_BYTES:
                raise LimitExceededError(
                    f"{self.path} has a member whose tar headers (long name, PAX or "
                    f"sparse headers) exceed {MAX_HEADER_BYTES} bytes; refusing to read "
                    "them (no real archive needs that much)."
                )
            self.header_bytes += size
        return self.fileobj.read(size)

    def seek(self, offset, whence=0):
        return self.fileobj.seek(offset, whence)

    def tell(self):
        return self.fileobj.tell()

    def read_member(self, archive, member):
        """The data of ``member``, read as data, not headers."""
        self.reading_data = True
        try:
            return archive.extractfile(member).read()
        finally:
            self.reading_data = False


def _iter_tar_fileobj(fileobj, path, wanted, limits):
    names = UniqueNames(path)
    try:
        with _decompressed(fileobj) as stream, \
                tarfile.open(fileobj=(reader := _HeaderBoundedReader(stream, path)),
                             mode="r:") as archive:
            while (member := archive.next()) is not None:
                reader.header_bytes = 0
                # TarFile keeps every member for random access, which is never
                # needed here: dropping them keeps memory flat over the archive.
                archive.members.clear()
                _check_tar_member(member, archive, path)
                limits.add(member.size if member.isreg() else 0)
                if member.isreg():
                    names.add(member.name)
                    if wanted(member.name):
                        yield member.name, reader.read_member(archive, member)
    except _TAR_ERRORS as exc:
        # OSError covers gzip.BadGzipFile; EOFError a truncated gzip stream.
        raise corrupt_file(path, repr(exc)) from exc


def _check_tar_member(member, archive, path):
    check_member_name(member.name, path)
    # Global PAX headers pile up in archive.pax_headers for the rest of the archive.
    if len(archive.pax_headers) > MAX_GLOBAL_HEADERS:
        raise LimitExceededError(
            f"{path} sets more than {MAX_GLOBAL_HEADERS} PAX global header keys by member "
            f"{member.name!r}; refusing to read it (no real archive needs that many)."
        )
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
            names = UniqueNames(path)
            for info in infos:
                _check_zip_member(info, path)
                limits.add(info.file_size)
                if not info.is_dir():
                    names.add(info.filename)
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
