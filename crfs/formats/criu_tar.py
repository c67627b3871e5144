"""A CRIU dump inside a tar archive (podman's `container checkpoint --export --compress
none`: the images under checkpoint/), served in place: each member is a window of the
archive, read by pread at its offset; nothing is copied. The archive is a Source: the file
itself, or the decompressed copy of a .tar.gz / .tar.zst (crfs.formats.criu_archive).
The regular files at the top of the archive (config.dump, spec.dump, ...) are kept as the
container's files (container_files).

The tar headers are read by our own parser (POSIX ustar, with GNU long names and pax
`path` records), bounded and checked (header checksums, sizes inside the file): a bad
archive is a FormatError naming the header's offset. Only regular files count; links,
devices and sparse members are skipped. The dump is the directory of the archive's
inventory.img; more than one dump in an archive is refused.
"""

import os

from crfs.errors import FormatError
from crfs.formats.criu import CriuDir
from crfs.formats.source import Source

BLOCK = 512
MAX_HEADERS = 1 << 20
MAX_NAME_DATA = 1 << 16
REGULAR = (b"0", b"\0", b"7")
MAX_CONTAINER_FILE = 16 << 20     # a container file shown beside the dump: at most this


def is_tar(head):
    return len(head) >= 262 and head[257:262] == b"ustar"


class SliceSource(Source):
    """Bytes [base, base + size) of another Source, as a Source of its own (offsets from
    0). Over a plain file it reads the file's descriptor directly."""

    def __init__(self, outer, base, size, path):
        super().__init__(outer.fd, size, path, owns_fd=False)
        self.outer = outer
        self.base = base

    def pread(self, offset, length):
        length = max(0, min(length, self.size - offset))
        if not length:
            return b""
        if type(self.outer) is Source:
            return os.pread(self.fd, length, self.base + offset)
        return self.outer.pread(self.base + offset, length)

    def readinto(self, buffer, offset):
        length = max(0, min(len(buffer), self.size - offset))
        if not length:
            return 0
        if type(self.outer) is Source:
            return os.preadv(self.fd, [memoryview(buffer)[:length]], self.base + offset)
        data = self.pread(offset, length)
        buffer[:len(data)] = data
        return len(data)


def _number(field, offset, what):
    """An octal (NUL/space padded) or base-256 header number."""
    if field and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise FormatError(f"tar header {what} {text!r} is not a number", offset=offset,
                          record="tar header") from None


def _checksum_ok(header, offset):
    stored = _number(header[148:156], offset, "checksum")
    blanked = header[:148] + b" " * 8 + header[156:]
    return stored == sum(blanked)


def _pax_path(data):
    """The `path` of a pax extended header's records ("LEN key=value\\n" each), or None."""
    path, pos = None, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            break
        if length <= 0:
            break
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "surrogateescape")
        pos += length
    return path


def scan(source):
    """{path: (data offset, size)} of the regular members of the tar archive `source`."""
    size = source.size
    members, offset, long_name = {}, 0, None
    for _ in range(MAX_HEADERS):
        if offset + BLOCK > size:
            if offset >= size:
                return members
            raise FormatError("archive ends inside a tar header", offset=offset,
                              record="tar header")
        header = source.pread(offset, BLOCK)
        if header == bytes(BLOCK):
            return members
        if not _checksum_ok(header, offset):
            raise FormatError("tar header checksum mismatch", offset=offset, record="tar header")
        length = _number(header[124:136], offset, "size")
        data = offset + BLOCK
        if length > size - data:
            raise FormatError(f"member of {length} bytes runs past the end of the archive",
                              offset=offset, record="tar header")
        kind = header[156:157]
        name = header[:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar" and header[345:500].strip(b"\0"):
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        name = name.decode("utf-8", "surrogateescape")
        if kind in (b"L", b"x"):
            if length > MAX_NAME_DATA:
                raise FormatError(f"extended header of {length} bytes", offset=offset,
                                  record="tar header")
            extra = source.pread(data, length)
            long_name = (extra.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                         if kind == b"L" else _pax_path(extra) or long_name)
        else:
            if kind in REGULAR:
                members[long_name or name] = (data, length)
            long_name = None
        offset = data + (length + BLOCK - 1) // BLOCK * BLOCK
    raise FormatError(f"more than {MAX_HEADERS} tar members", offset=offset, record="tar header")


def dump_prefix(members):
    """The directory (with its trailing /, or "") of the one inventory.img, or None."""
    found = [p for p in members if p.rsplit("/", 1)[-1] == "inventory.img"]
    if not found:
        return None
    if len(found) > 1:
        raise FormatError(f"{len(found)} CRIU dumps in one archive ({', '.join(found)})",
                          record="tar archive")
    return found[0][:-len("inventory.img")]


def container_files(members):
    """{name: (offset, size)} of the container's own files beside the dump: the regular
    members at the top of the archive (config.dump, spec.dump, network.status, ...), but
    for CRIU images and the tars of file-system changes (rootfs-diff.tar), which are no
    configuration and may be big, and files over MAX_CONTAINER_FILE."""
    return {p: place for p, place in members.items()
            if "/" not in p and not p.endswith((".tar", ".img"))
            and place[1] <= MAX_CONTAINER_FILE}


class CriuTar(CriuDir):
    """The CRIU dump of a tar archive as a CriuDir whose members are windows of the
    archive (a Source: the file itself, or its decompressed stream, crfs.formats.
    criu_archive). `container` holds the container's files beside the dump."""

    extracted = False       # True: the archive is a decompressed copy (criu_archive)

    def __init__(self, archive, path, where, container=None):
        self.archive = archive
        self._where = where
        self.container = container or {}
        super().__init__(archive.fd, path, [(n, size) for n, (_, size) in where.items()])
        self._owns_fd = False           # the archive Source's

    @classmethod
    def open(cls, path, follow_symlinks=True):
        source = Source.open(path, follow_symlinks)
        try:
            found = cls.from_source(source, path)
            if found is None:
                raise FormatError("a tar archive without a CRIU inventory.img", offset=0,
                                  record="tar archive")
            return found
        except BaseException:
            source.close()
            raise

    @classmethod
    def from_source(cls, archive, path):
        """The CriuTar of the tar archive `archive` (a Source; the CriuTar closes it), or
        None when it holds no dump."""
        members = scan(archive)
        prefix = dump_prefix(members)
        if prefix is None:
            return None
        where = {p[len(prefix):]: place for p, place in members.items()
                 if p.startswith(prefix) and "/" not in p[len(prefix):]
                 and p.endswith(".img")}
        return cls(archive, path, where, container_files(members))

    def container_source(self, name):
        """A Source over the container's file `name` (one of self.container)."""
        base, size = self.container[name]
        return SliceSource(self.archive, base, size, name)

    def _open_member(self, name):
        if name not in self._where:
            raise FormatError("not in the archive", record=name)
        base, size = self._where[name]
        return SliceSource(self.archive, base, size, name)

    def close(self):
        super().close()
        if getattr(self, "archive", None) is not None:
            self.archive.close()
