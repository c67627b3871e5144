"""Compressed container checkpoint archives: `.tar.gz` and `.tar.zst` holding a CRIU dump
(`podman container checkpoint --export`, the kubelet's checkpoint API), served through a
cached extraction: the archive is decompressed once, in one pass, into a plain file (the
tar stream), which crfs.formats.criu_tar.CriuTar then serves in place as an uncompressed
archive. Why an extraction rather than a seek-point index: docs/format-criu.md
(bench/criu_archive.py measures both).

Where the extraction goes is the caller's: a keyed, bounded cache (crfs.fs.archive_cache,
in the mount's index directory), or, with none, an unnamed temporary file removed when the
archive is closed. Either way it is bounded (MAX_EXTRACTED by default): an archive that
decompresses to more is refused, not written out.

Decompressed bytes are held at most OUT at a time (a small archive may inflate a
thousandfold or more). A corrupt stream is a FormatError naming the compressed offset of
the chunk (CHUNK bytes) where the decompressor failed; a cut one, the end of the file
(gzip) or the zstd frame or block it cuts (the zstd frame and block headers are walked
before decompressing: zstandard's streaming reader does not notice a cut). Errors of the
tar inside name their offset in the decompressed stream.
"""

import os
import tempfile
import zlib

from crfs.errors import FormatError
from crfs.formats.source import Source

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 64 * 1024                 # compressed bytes fed to the decompressor at a time
OUT = 1 << 20                     # the most decompressed bytes held at a time
MAX_EXTRACTED = 8 << 30           # the most an archive may decompress to
SUFFIXES = {"gzip": ".tar.gz", "zstd": ".tar.zst"}


def compression(head):
    """"gzip" or "zstd" for a file starting with `head`, or None."""
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    return None


def decompress(source, kind, write, limit=MAX_EXTRACTED):
    """Decompress the whole `source` (gzip: every member; zstd: every frame), calling
    write(bytes) with each piece (at most OUT bytes: a small archive that inflates a
    thousandfold is never held in memory); the decompressed size. FormatError (record
    "gzip stream" or "zstd stream", the compressed offset) on corrupt or truncated data,
    or past `limit` decompressed bytes."""
    pieces = _gunzip(source) if kind == "gzip" else _unzstd(source)
    total = 0
    for out, at in pieces:
        total += len(out)
        if total > limit:
            raise FormatError(f"decompresses to more than {limit} bytes, the most crfs "
                              f"extracts", offset=at, record=f"{kind} stream")
        write(out)
    return total


def _gunzip(source):
    """(piece, compressed offset) of every member of a gzip file; zero padding after the
    last member is skipped."""
    stream, offset, data, at = None, 0, b"", 0
    while True:
        if not data:
            at, data = offset, source.pread(offset, CHUNK)
            offset += len(data)
            if not data:
                break
        if stream is None:
            if not data.strip(b"\0"):
                data = b""              # zero padding after the last member
                continue
            stream = zlib.decompressobj(wbits=31)    # a member: header and CRC checked
        try:
            out = stream.decompress(data, OUT)
        except zlib.error as exc:
            raise FormatError(f"corrupt gzip data in the {len(data)} bytes from this "
                              f"offset: {exc}", offset=at, record="gzip stream") from None
        if out:
            yield out, at
        data = stream.unconsumed_tail
        if stream.eof:                  # the next member, if any, follows
            data, stream = stream.unused_data, None
            at = offset - len(data)
    if stream is not None:
        raise FormatError("truncated: the file ends inside a gzip member",
                          offset=source.size, record="gzip stream")


ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)


def zstd_frames(source):
    """Check the frame and block structure of a zstd file (RFC 8878: frame headers,
    block headers, checksums; skippable frames) without decompressing: FormatError at
    the offset where it is cut or makes no sense. A few bytes read per 128 KiB block."""
    offset = 0
    while offset < source.size:
        head = source.pread(offset, 14)
        if len(head) < 8 and int.from_bytes(head[:4].ljust(4, b"\0"), "little") \
                in ZSTD_SKIPPABLE or len(head) < 6:
            raise FormatError("truncated: the file ends inside a zstd frame header",
                              offset=offset, record="zstd stream")
        magic = int.from_bytes(head[:4], "little")
        if magic in ZSTD_SKIPPABLE:
            offset += 8 + int.from_bytes(head[4:8], "little")
            continue
        if head[:4] != ZSTD_MAGIC:
            raise FormatError(f"magic {magic:#010x} is no zstd frame's", offset=offset,
                              record="zstd stream")
        fhd = head[4]
        single = fhd >> 5 & 1
        fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        offset += 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
        while True:
            block = source.pread(offset, 3)
            if len(block) < 3:
                raise FormatError("truncated: the file ends inside a zstd block header",
                                  offset=offset, record="zstd stream")
            word = int.from_bytes(block, "little")
            size = 1 if (word >> 1) & 3 == 1 else word >> 3     # RLE: one byte
            if offset + 3 + size > source.size:
                raise FormatError(f"truncated: the file ends inside a zstd block of {size} "
                                  f"bytes", offset=offset, record="zstd stream")
            offset += 3 + size
            if word & 1:
                break
        offset += 4 if fhd >> 2 & 1 else 0                      # content checksum
        if offset > source.size:
            raise FormatError("truncated: the file ends inside a zstd frame",
                              offset=source.size, record="zstd stream")


class _Reader:
    """A file object over a Source for zstandard's stream_reader, remembering where it
    read last (the offset an error is reported at)."""

    def __init__(self, source):
        self.source, self.offset, self.at = source, 0, 0

    def read(self, size=-1):
        size = CHUNK if size is None or size < 0 else size
        self.at = self.offset
        data = self.source.pread(self.offset, size)
        self.offset += len(data)
        return data


def _unzstd(source):
    """(piece, compressed offset) of every frame of a zstd file."""
    import zstandard
    zstd_frames(source)
    reader = _Reader(source)
    stream = zstandard.ZstdDecompressor().stream_reader(reader, read_size=CHUNK,
                                                        read_across_frames=True)
    while True:
        try:
            out = stream.read(OUT)
        except zstandard.ZstdError as exc:
            raise FormatError(f"corrupt zstd data in the "
                              f"{min(CHUNK, source.size - reader.at)} bytes from this "
                              f"offset: {exc}", offset=reader.at, record="zstd stream") from None
        if not out:
            return
        yield out, reader.at


def extract_to(source, kind, fd, limit=MAX_EXTRACTED):
    """Decompress `source` into the file open on `fd` (from its start); the size."""
    def write(data):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return decompress(source, kind, write, limit)


def temporary_extraction(source, kind, limit=MAX_EXTRACTED):
    """A Source over the decompressed stream of `source`, in an unnamed temporary file
    (gone when the Source is closed)."""
    tmp = tempfile.TemporaryFile(prefix="crfs-archive-")
    fd = os.dup(tmp.fileno())
    tmp.close()
    try:
        size = extract_to(source, kind, fd, limit)
    except BaseException:
        os.close(fd)
        raise
    return Source(fd, size, f"{source.path} (decompressed)")


def open_archive(source, path, kind, cache=None):
    """The CriuTar of compressed archive `source` (closed here once extracted), or None
    when its tar holds no CRIU dump. cache: an object with extracted(source, kind) ->
    Source (crfs.fs.archive_cache.ArchiveCache), or None for a temporary extraction."""
    from crfs.formats import criu_tar
    try:
        tar = cache.extracted(source, kind) if cache is not None \
            else temporary_extraction(source, kind)
    finally:
        source.close()
    try:
        head = tar.pread(0, criu_tar.BLOCK)
        if not criu_tar.is_tar(head):
            raise FormatError(f"the decompressed {kind} stream is not a tar archive",
                              offset=0, record=f"{kind} stream")
        try:
            found = criu_tar.CriuTar.from_source(tar, path)
        except FormatError as exc:
            if exc.record == "tar header":
                exc.record = "tar header (offset in the decompressed stream)"
            raise
    except BaseException:
        tar.close()
        raise
    if found is None:
        tar.close()
    else:
        found.extracted = True          # its tar is a decompressed copy
    return found
