"""Safe reading of an uploaded package archive (zip or tar.gz) into memory.

Nothing is ever extracted to disk. Members are read one by one with bounded reads, and
refused, each with a message naming the member, when they are:

* links (symbolic or hard), devices, FIFOs or anything but regular files and directories;
* absolute paths, drive letters, backslashes, ``..`` segments or NUL characters;
* present twice (the same path, or two paths with the same file name: the repository is flat);
* larger than ``member_bytes`` once decompressed (counted while reading, never trusted from
  the header), or more than ``max_members``;
* part of an archive whose decompressed total exceeds ``total_bytes``, or whose ratio of
  decompressed to compressed bytes exceeds ``max_ratio`` (once past 1 MiB): archive bombs.

``read_archive`` returns ``{file name: bytes}`` (directories dropped, the file name being the
member's last path segment); the caller decides what the files mean. With ``keep_paths=True``
the keys are the members' normalised paths (``pkg/util.py``) and only the same path twice is
a duplicate (a Python package zip, jobico_runtime/python.py). ``member_problem(path)``,
when given, may refuse a regular member by its path before its bytes are read.
"""
from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Invalid, JobicoError

RATIO_FLOOR = 1 << 20  # the ratio check starts once this much is decompressed (small files compress well)


@dataclass(frozen=True)
class ArchiveLimits:
    total_bytes: int            # decompressed, all members together
    member_bytes: int           # decompressed, one member
    max_members: int = 64
    max_ratio: int = 200


class ArchiveRefused(Invalid):
    """A member (or the archive) is refused: 422 naming it; TooLarge-style refusals are 413."""

    def __init__(self, member: str | None, message: str, status: int = 422):
        where = f"{member}: " if member else ""
        super().__init__(f"archive refused: {where}{message}",
                         {"archive": [{"member": member or "", "message": message}]}, status=status)
        self.member = member
        self.reason = message


def kind_of(data: bytes) -> str | None:
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[:2] == b"\x1f\x8b":
        return "tar.gz"
    return None


def read_archive(data: bytes, limits: ArchiveLimits, *, keep_paths: bool = False,
                 member_problem: Callable[[str], str | None] | None = None) -> dict[str, bytes]:
    kind = kind_of(data)
    if kind is None:
        raise JobicoError("the body is neither a zip nor a gzip-compressed tar archive "
                          "(send application/zip or application/gzip)", {"archive": [{"member": "",
                                                                                     "message": "unknown format"}]},
                          status=415)
    reader = _Reader(limits, len(data), keep_paths, member_problem)
    if kind == "zip":
        _read_zip(data, reader)
    else:
        _read_tar(data, reader)
    return reader.files


def _safe_name(name: str, keep_path: bool = False) -> str:
    """The member's file name (last segment; its normalised path with ``keep_path``) after checking its whole path."""
    if "\0" in name:
        raise ArchiveRefused(name.replace("\0", "\\0"), "the path contains a NUL character")
    if "\\" in name:
        raise ArchiveRefused(name, "the path contains a backslash (use '/')")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveRefused(name, "absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(name, "'..' in a path is not allowed")
    if not parts:
        raise ArchiveRefused(name, "an empty path")
    return "/".join(parts) if keep_path else parts[-1]


class _Reader:
    def __init__(self, limits: ArchiveLimits, compressed: int, keep_paths: bool = False,
                 member_problem: Callable[[str], str | None] | None = None):
        self.limits = limits
        self.keep_paths = keep_paths
        self.member_problem = member_problem
        self.compressed = max(compressed, 1)
        self.total = 0
        self.members = 0
        self.files: dict[str, bytes] = {}
        self.paths: dict[str, str] = {}   # file name -> the member path it came from

    def count_member(self, name: str) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveRefused(name, f"the archive has more than {self.limits.max_members} members",
                                 status=413)

    def add_bytes(self, name: str, n: int) -> None:
        self.total += n
        if self.total > self.limits.total_bytes:
            raise ArchiveRefused(name, f"the archive decompresses to more than {self.limits.total_bytes // 1024} KB",
                                 status=413)
        if self.total > RATIO_FLOOR and self.total > self.limits.max_ratio * self.compressed:
            raise ArchiveRefused(name, f"the archive decompresses to over {self.limits.max_ratio} times its "
                                       "size (an archive bomb?)", status=413)

    def check(self, name: str) -> str:
        """The key of a regular member, refused here (before it is read) if its path is bad."""
        key = _safe_name(name, self.keep_paths)
        if self.member_problem is not None:
            problem = self.member_problem(key)
            if problem:
                raise ArchiveRefused(name, problem)
        return key

    def read(self, name: str, stream) -> None:
        """Read one regular member from a file-like object, bounded."""
        file_name = self.check(name)
        if file_name in self.files:
            earlier = self.paths[file_name]
            raise ArchiveRefused(name, "a duplicate name" + ("" if earlier == name else
                                                              f" (the repository is flat: {earlier!r} "
                                                              f"has the same file name)"))
        chunks, size = [], 0
        while True:
            chunk = stream.read(min(65536, self.limits.member_bytes + 1 - size))
            if not chunk:
                break
            size += len(chunk)
            self.add_bytes(name, len(chunk))
            if size > self.limits.member_bytes:
                raise ArchiveRefused(name, f"the member is larger than {self.limits.member_bytes // 1024} KB",
                                     status=413)
            chunks.append(chunk)
        self.files[file_name] = b"".join(chunks)
        self.paths[file_name] = name


CD_BYTES_PER_MEMBER = 1024  # a central directory entry: 46 bytes + its name and extra fields


def _check_zip_directory(data: bytes, limits: ArchiveLimits) -> None:
    """Before zipfile parses it: the central directory must be small (zipfile builds an object per
    entry, reading as many as the directory's byte size holds, whatever count the record claims)."""
    pos = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if pos < 0 or pos + 22 > len(data):
        raise ArchiveRefused(None, "not a readable zip archive: no end of central directory record")
    entries = int.from_bytes(data[pos + 10:pos + 12], "little")
    cd_size = int.from_bytes(data[pos + 12:pos + 16], "little")
    if entries > limits.max_members or cd_size > limits.max_members * CD_BYTES_PER_MEMBER:
        raise ArchiveRefused(None, f"the archive has more than {limits.max_members} members (or a central "
                                   "directory too large for them)", status=413)


def _read_zip(data: bytes, reader: _Reader) -> None:
    _check_zip_directory(data, reader.limits)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise ArchiveRefused(None, f"not a readable zip archive: {exc}") from None
    if len(infos) > reader.limits.max_members:
        raise ArchiveRefused(infos[reader.limits.max_members].filename,
                             f"the archive has more than {reader.limits.max_members} members", status=413)
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        reader.count_member(name)
        if name in seen:
            raise ArchiveRefused(name, "a duplicate name")
        seen.add(name)
        mode = info.external_attr >> 16   # a Unix mode, when the archiver set one (0: a DOS/Windows zip)
        if stat.S_ISLNK(mode):
            raise ArchiveRefused(name, "symbolic links are not allowed")
        if info.is_dir():
            _safe_name(name.rstrip("/") or "/")
            continue
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            raise ArchiveRefused(name, "only regular files and directories are allowed")
        reader.check(name)
        if info.flag_bits & 0x1:
            raise ArchiveRefused(name, "encrypted members are not supported")
        if info.file_size > reader.limits.member_bytes:   # the header's claim; the read below counts anyway
            raise ArchiveRefused(name, f"the member is larger than {reader.limits.member_bytes // 1024} KB",
                                 status=413)
        if info.compress_size and info.file_size > RATIO_FLOOR \
                and info.file_size > reader.limits.max_ratio * info.compress_size:
            raise ArchiveRefused(name, f"the member decompresses to over {reader.limits.max_ratio} times its "
                                       "size (an archive bomb?)", status=413)
        try:
            with zf.open(info) as stream:
                reader.read(name, stream)
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, ValueError) as exc:
            raise ArchiveRefused(name, f"cannot be read: {exc}") from None


class _BoundedGzip(io.RawIOBase):
    """The decompressed tar stream, refused past the total limit or the ratio (before tarfile
    even parses headers: a bomb of empty headers is caught too)."""

    def __init__(self, data: bytes, reader: _Reader):
        self.gz = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        self.reader = reader
        self.read_so_far = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = self.gz.readinto(buf)
        self.read_so_far += n
        limits = self.reader.limits
        # headers and padding count too: the tar stream as a whole is bounded (a little above the files' sum)
        if self.read_so_far > limits.total_bytes + 512 * (limits.max_members + 2) + 10240:
            raise ArchiveRefused(None, f"the archive decompresses to more than {limits.total_bytes // 1024} KB",
                                 status=413)
        if self.read_so_far > RATIO_FLOOR and self.read_so_far > limits.max_ratio * self.reader.compressed:
            raise ArchiveRefused(None, f"the archive decompresses to over {limits.max_ratio} times its size "
                                       "(an archive bomb?)", status=413)
        return n


def _read_tar(data: bytes, reader: _Reader) -> None:
    try:
        tf = tarfile.open(fileobj=io.BufferedReader(_BoundedGzip(data, reader)), mode="r|")
        seen: set[str] = set()
        for member in tf:
            name = member.name
            reader.count_member(name)
            if name in seen:
                raise ArchiveRefused(name, "a duplicate name")
            seen.add(name)
            if member.issym() or member.islnk():
                raise ArchiveRefused(name, "symbolic and hard links are not allowed")
            if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
                raise ArchiveRefused(name, "devices and FIFOs are not allowed")
            if member.isdir():
                _safe_name(name.rstrip("/") or "/")
                continue
            if not member.isreg():
                raise ArchiveRefused(name, "only regular files and directories are allowed")
            reader.check(name)
            if member.size > reader.limits.member_bytes:
                raise ArchiveRefused(name, f"the member is larger than {reader.limits.member_bytes // 1024} KB",
                                     status=413)
            stream = tf.extractfile(member)
            reader.read(name, stream)
    except ArchiveRefused:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise ArchiveRefused(None, f"not a readable tar.gz archive: {exc}") from None


__all__ = ["ArchiveLimits", "ArchiveRefused", "read_archive", "kind_of"]
