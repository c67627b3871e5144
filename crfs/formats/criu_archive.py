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

A corrupt or truncated stream is a FormatError naming the compressed offset of the
chunk (CHUNK bytes) where the decompressor failed, or, for a stream that ends early, the
end of the file; errors of the tar inside name their offset in the decompressed stream.
"""

import os
import tempfile
import zlib

from crfs.errors import FormatError
from crfs.formats.source import Source

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 64 * 1024                 # compressed bytes fed to the decompressor at a time
MAX_EXTRACTED = 8 << 30           # the most an archive may decompress to
SUFFIXES = {"gzip": ".tar.gz", "zstd": ".tar.zst"}


def compression(head):
    """"gzip" or "zstd" for a file starting with `head`, or None."""
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    return None


def _gzip_member():
    return zlib.decompressobj(wbits=31)      # one gzip member, header and CRC checked


def _zstd_frame():
    import zstandard
    return zstandard.ZstdDecompressor().decompressobj()


def _errors(kind):
    if kind == "gzip":
        return (zlib.error,)
    import zstandard
    return (zstandard.ZstdError,)


def decompress(source, kind, write, limit=MAX_EXTRACTED):
    """Decompress the whole `source` (gzip: every member; zstd: every frame), calling
    write(bytes) with each piece; the decompressed size. FormatError (record "gzip stream"
    or "zstd stream", the compressed offset) on corrupt or truncated data, or past
    `limit` decompressed bytes."""
    record = f"{kind} stream"
    new = _gzip_member if kind == "gzip" else _zstd_frame
    errors = _errors(kind)
    stream, offset, total, data, at = None, 0, 0, b"", 0
    while True:
        if not data:
            at, data = offset, source.pread(offset, CHUNK)
            offset += len(data)
            if not data:
                break
        if stream is None:
            if kind == "gzip" and not data.strip(b"\0"):
                data = b""              # zero padding after the last member
                continue
            stream = new()
        try:
            out = stream.decompress(data)
        except errors as exc:
            raise FormatError(f"corrupt {kind} data in the {len(data)} bytes from this "
                              f"offset: {exc}", offset=at, record=record) from None
        total += len(out)
        if total > limit:
            raise FormatError(f"decompresses to more than {limit} bytes, the most crfs "
                              f"extracts", offset=at, record=record)
        if out:
            write(out)
        data = b""
        if stream.eof:                  # the next member (frame), if any, follows
            data, stream = stream.unused_data, None
            at = offset - len(data)
    if stream is not None or total == 0:
        raise FormatError(f"truncated: the file ends inside the {kind} stream "
                          f"({total} bytes decompressed)", offset=source.size, record=record)
    return total


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
    return found
